"""What every evaluator receives: the model, its (sharded) params and how to feed it."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import multihost_utils

from mmscale.parallel import rules as sharding_rules


@dataclasses.dataclass
class EvalContext:
  config: object
  model: nn.Module
  params: object
  tokenizer: object
  mesh: jax.sharding.Mesh
  rules: tuple
  workdir: str = ""  # the run directory when known (default TCCD centroids: W/analysis/)

  @property
  def batch_shards(self) -> int:
    """Rows of an eval batch must be a multiple of this (data x fsdp)."""
    return self.mesh.shape["data"] * self.mesh.shape["fsdp"]

  def rows_per_batch(self) -> int:
    rows = self.config.eval.batch_size
    return max(self.batch_shards, rows - rows % self.batch_shards)

  def to_global(self, batch: dict) -> dict:
    """Host batch with all rows (identical on every process) -> global arrays.

    Each process contributes the rows of its own slice, as in training.
    """
    rows = next(iter(batch.values())).shape[0]
    index, count = jax.process_index(), jax.process_count()
    local = {k: v[index * rows // count:(index + 1) * rows // count] for k, v in batch.items()}
    return sharding_rules.global_batch(local, self.mesh, self.rules)

  @staticmethod
  def to_host(x) -> np.ndarray:
    """Global array -> the full numpy array on every process."""
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def batches_of(items: list, rows: int):
  """Yields (chunk, n_real): chunks of exactly `rows` items, the last padded by repeating its first.

  Fixed shapes mean one compilation for the whole evaluation.
  """
  for start in range(0, len(items), rows):
    chunk = items[start:start + rows]
    n_real = len(chunk)
    yield chunk + [chunk[0]] * (rows - n_real), n_real
