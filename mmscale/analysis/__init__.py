"""Modality-balance diagnostics: centroid-replacement probe and text-centroid contrastive decoding.

hidden.py (collect decoder hidden states per modality), kmeans.py (sharded K-means),
centroids.py (fit centroid sets), decode.py (greedy decoding with erasure), contrastive.py (the
TCCD sweep), probe.py (the VQA evaluations), plot.py, workdir.py (load a run for analysis).
Erasure as a decoding pass, centroid files and TCCD itself live in mmscale/eval (erasure.py,
contrastive.py) so every evaluator can decode with them. See docs/analysis.md.
"""
