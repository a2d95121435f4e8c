"""Modality-balance diagnostics: centroid-replacement probe and text-centroid contrastive decoding.

hidden.py (collect decoder hidden states per modality), kmeans.py (sharded K-means),
centroids.py (fit / save / load centroid sets, erase specs), decode.py (KV-cached greedy decoding
with optional erasure), contrastive.py (TCCD), probe.py (the VQA evaluations), plot.py,
workdir.py (load a run for analysis). See docs/analysis.md.
"""
