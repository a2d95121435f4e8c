"""Centroid erasure as a decoding pass: modality masks, centroid-set files, erase specs, passes.

The model (mmscale/models/mllm.py) takes `erase={"centroids": float[depth, C, D], "active":
bool[depth], "mask": bool[B, T]}`: after each active decoder block, hidden states at mask
positions become their nearest centroid. Here that becomes a `generate.Pass` so that any decoder
of the evaluation suite can run an erased pass beside the full one (TCCD, `contrastive.py`), and
mmscale/analysis (the probe) reuses the same pieces rather than its own decoder.

Centroid sets are written by tools/probe.py (`mmscale.analysis.centroids.fit_centroids`) as
`centroids.npz` (arrays `text`, `image`: float32[len(layers), k, D]) + `centroids.json` (layers,
k, fit metadata); they live here because evaluation reads them and may not import analysis.
"""

from __future__ import annotations

import dataclasses
import io

import jax
import jax.numpy as jnp
import numpy as np

from mmscale import paths
from mmscale.eval.generate import Pass

MODALITIES = ("text", "image")


def modality_masks(batch: dict) -> dict[str, jax.Array]:
  """{"image": bool[B, T], "text": bool[B, T]}: image = an `image_positions` index, text = every
  other non-padding position (BOS, questions, answers). Padding (segment 0) is in neither.

  A decode step's batch (one generated token, no `image_positions`) is all text, so generated
  tokens count as text: a text-erased pass erases them, an image-erased pass never does.
  """
  tokens = batch["tokens"]
  b, t = tokens.shape
  valid = batch.get("segment_ids", jnp.ones((b, t), jnp.int32)) != 0
  image = jnp.zeros((b, t), jnp.bool_)
  if "image_positions" in batch and batch.get("images") is not None:
    rows = jnp.arange(b)[:, None]
    image = image.at[rows, batch["image_positions"]].set(True, mode="drop")
  image = image & valid
  return {"image": image, "text": valid & ~image}


@dataclasses.dataclass
class CentroidSet:
  layers: tuple[int, ...]  # decoder block indices (0-based), output of that block
  k: int
  centroids: dict[str, np.ndarray]  # modality -> float32[len(layers), k, D]
  meta: dict = dataclasses.field(default_factory=dict)

  def save(self, directory: str) -> str:
    """Writes centroids.npz + centroids.json under `directory` (local or `gs://...`); returns the
    npz path."""
    buffer = io.BytesIO()
    np.savez(buffer, **self.centroids)
    path = paths.write_bytes(paths.join(directory, "centroids.npz"), buffer.getvalue())
    paths.write_json(paths.join(directory, "centroids.json"),
                     {"layers": list(self.layers), "k": self.k, **self.meta}, indent=2)
    return path

  @classmethod
  def load(cls, directory: str) -> "CentroidSet":
    """The set saved under `directory` (centroids.npz + centroids.json)."""
    return cls.load_file(paths.join(directory, "centroids.npz"))

  @classmethod
  def load_file(cls, npz_path: str) -> "CentroidSet":
    """The set of an npz file, with the centroids.json beside it (layers, k, metadata)."""
    meta = paths.read_json(paths.join(paths.parent(npz_path), "centroids.json"))
    with np.load(io.BytesIO(paths.read_bytes(npz_path))) as z:
      arrays = {m: z[m] for m in z.files}
    layers, k = tuple(meta.pop("layers")), meta.pop("k")
    return cls(layers=layers, k=k, centroids=arrays, meta=meta)


def erase_layers(cset: CentroidSet, modality: str, depth: int, layers=None) -> dict:
  """Per-layer part of an erase spec for a decoder of `depth` blocks:
  {"centroids": float32[depth, k, D], "active": bool[depth]}; `layers` (default: all of the
  set's) picks which of the set's layers are erased. Inactive layers hold zeros (never used)."""
  layers = cset.layers if layers is None else tuple(layers)
  c = cset.centroids[modality]
  full = np.zeros((depth,) + c.shape[1:], np.float32)
  active = np.zeros(depth, bool)
  missing = set(layers) - set(cset.layers)
  if missing:
    raise ValueError(f"no centroids for layers {sorted(missing)}; the set has {cset.layers}")
  for i, layer in enumerate(cset.layers):
    if layer in layers:
      if not 0 <= layer < depth:
        raise ValueError(f"centroid layer {layer} is outside a decoder of depth {depth}")
      full[layer], active[layer] = c[i], True
  return {"centroids": jnp.asarray(full), "active": jnp.asarray(active)}


def erased_params(params, layers: dict) -> dict:
  """The params of an `ErasedPass`: the model's params and the per-layer erase arrays
  ({"centroids": float[depth, C, D], "active": bool[depth]}). Both are traced jit arguments, so
  other centroids or params reuse the compilation."""
  return {"params": params, "erase": {"centroids": layers["centroids"],
                                      "active": layers["active"]}}


@dataclasses.dataclass(frozen=True)
class ErasedPass(Pass):
  """A `Pass` whose `modality` hidden states are replaced by their nearest centroids.

  Its params are `erased_params(params, layers)`; the erase mask of every call is derived from
  the batch it sees (`modality_masks`): the prompt's modality positions at prefill, generated
  tokens as text. Only `modality` (a string) is static, so the pass hashes by value and jit
  caches hold across calls and centroid sets of the same shape.
  """
  modality: str = "text"

  def apply(self, variables: dict, batch: dict, **kwargs):
    wrapped = variables["params"]
    erase = dict(wrapped["erase"], mask=modality_masks(batch)[self.modality])
    return super().apply({**variables, "params": wrapped["params"]}, batch, erase=erase,
                         **kwargs)
