"""Centroid sets: per-modality, per-layer K-means centroids, their files, and erase specs.

Saved with the run as `W/analysis/centroids.npz` (arrays `text` and `image`, each
float32[len(layers), k, D]) plus `centroids.json` (layers, k, point counts, inertia, the
calibration set and its provenance), so a probe or TCCD run can reuse them without refitting.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax.numpy as jnp
import numpy as np

from mmscale.analysis import kmeans
from mmscale.analysis.hidden import MODALITIES


@dataclasses.dataclass
class CentroidSet:
  layers: tuple[int, ...]  # decoder block indices (0-based), output of that block
  k: int
  centroids: dict[str, np.ndarray]  # modality -> float32[len(layers), k, D]
  meta: dict = dataclasses.field(default_factory=dict)

  def save(self, directory: str) -> str:
    """Writes centroids.npz + centroids.json under `directory`; returns the npz path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "centroids.npz")
    np.savez(path, **self.centroids)
    with open(os.path.join(directory, "centroids.json"), "w") as f:
      json.dump({"layers": list(self.layers), "k": self.k, **self.meta}, f, indent=2)
    return path

  @classmethod
  def load(cls, directory: str) -> "CentroidSet":
    with open(os.path.join(directory, "centroids.json")) as f:
      meta = json.load(f)
    with np.load(os.path.join(directory, "centroids.npz")) as z:
      arrays = {m: z[m] for m in z.files}
    layers, k = tuple(meta.pop("layers")), meta.pop("k")
    return cls(layers=layers, k=k, centroids=arrays, meta=meta)


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


def erase_layers(cset: CentroidSet, modality: str, depth: int, layers=None) -> dict:
  """Per-layer part of an erase spec for a decoder of `depth` blocks:
  {"centroids": float32[depth, k, D], "active": bool[depth]}; `layers` (default: all of the
  set's) picks which of the set's layers are erased. Inactive layers hold zeros (never used)."""
  layers = cset.layers if layers is None else tuple(layers)
  c = cset.centroids[modality]
  full = np.zeros((depth,) + c.shape[1:], np.float32)
  active = np.zeros(depth, bool)
  for i, layer in enumerate(cset.layers):
    if layer in layers:
      full[layer], active[layer] = c[i], True
  missing = set(layers) - set(cset.layers)
  if missing:
    raise ValueError(f"no centroids for layers {sorted(missing)}; the set has {cset.layers}")
  return {"centroids": jnp.asarray(full), "active": jnp.asarray(active)}
