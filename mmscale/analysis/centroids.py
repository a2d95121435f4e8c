"""Centroid sets: per-modality, per-layer K-means centroids fitted on collected hidden states.

Saved with the run (tools/probe.py: `W/analysis/probe_l<layers>_k<k>/centroids.npz`, arrays
`text` and `image`, each float32[len(layers), k, D], plus `centroids.json`: layers, k, point
counts, inertia, the calibration set and its provenance), so a probe, TCCD sweep or TCCD
evaluation (`eval.tccd_centroids`) reuses them without refitting. The file format
(`CentroidSet`) and erase specs (`erase_layers`) live in mmscale/eval/erasure.py, which
evaluation reads; they are re-exported here.
"""

from __future__ import annotations

import numpy as np

from mmscale.analysis import kmeans
from mmscale.eval.erasure import MODALITIES, CentroidSet, erase_layers

__all__ = ["CentroidSet", "erase_layers", "fit_centroids"]


def fit_centroids(hidden: dict[str, np.ndarray], layers, k: int, *, seed: int = 0,
                  max_iters: int = 100, tol: float = 1e-5, mesh=None,
                  max_points: int = 0) -> CentroidSet:
  """K-means per modality and layer of collected hidden states.

  Args:
    hidden: {modality: float[len(layers), N, D]} from `hidden.collect`.
    max_points: if > 0, a seeded random subset of at most this many points per modality (the
      cost is N x k x D per step; a subset of a few 10^4 points estimates the centroids well).
  """
  rng = np.random.default_rng(seed)
  out, meta = {}, {"points": {}, "inertia": {}, "iterations": {}}
  for m in MODALITIES:
    states = hidden[m]
    if max_points and states.shape[1] > max_points:
      states = states[:, np.sort(rng.choice(states.shape[1], max_points, replace=False))]
    per_layer, inertia, iters = [], [], []
    for i in range(len(layers)):
      c, inert, it = kmeans.fit(states[i], k, seed=seed + i, max_iters=max_iters, tol=tol,
                                mesh=mesh)
      per_layer.append(c)
      inertia.append(inert / states.shape[1])
      iters.append(it)
    out[m] = np.stack(per_layer)
    meta["points"][m] = int(states.shape[1])
    meta["inertia"][m] = inertia  # mean squared distance to the nearest centroid
    meta["iterations"][m] = iters
  return CentroidSet(layers=tuple(layers), k=k, centroids=out, meta=meta)
