"""Modality-balance diagnostics: the centroid-replacement probe and text-centroid contrastive
decoding, on a run loaded with `mmscale.eval.loading.load_run`. See docs/analysis.md."""
