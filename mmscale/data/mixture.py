"""Weighted mixture of data arms (`data.mixture`, {arm: weight}) as one grain MapDataset.

Each arm is its record directory `world_dir/arms/<arm>`, shuffled with its own seed, repeated
forever (reshuffled every epoch by grain), and sliced for this process *before* mixing. Slicing
per arm rather than the mixed stream matters: `MapDataset.mix` interleaves arms in a fixed
periodic pattern, so slicing the mixed stream with a stride equal to that period (weights 1:1
and 2 processes) would hand each process a single arm. Per arm, process p of P reads positions
p, p+P, ... of the arm's global shuffled stream: disjoint across processes, their union is the
whole stream, and every process realises the mixture weights.

Cost note: grain's stateless `index_shuffle` takes ~5-50 us per index for arms of 10^3..10^6
records but milliseconds for arms of a few dozen; only toy arms notice.
"""

import os
import zlib
from typing import Mapping

import grain
import numpy as np

from mmscale.data import records
from mmscale.errors import ConfigError


def normalised_weights(mixture: Mapping[str, float]) -> dict[str, float]:
  """{arm: weight} -> weights summing to 1, dropping arms of weight 0 (sorted by arm name)."""
  if not mixture:
    raise ConfigError("data.mixture", "empty; give {arm: weight}")
  out = {}
  for arm, w in sorted(dict(mixture).items()):
    if not isinstance(w, (int, float)) or w < 0 or not np.isfinite(w):
      raise ConfigError(f"data.mixture.{arm}", f"weight must be a finite number >= 0, got {w!r}")
    if w > 0:
      out[arm] = float(w)
  total = sum(out.values())
  if total <= 0:
    raise ConfigError("data.mixture", "all weights are 0")
  return {arm: w / total for arm, w in out.items()}


def arm_dir(world_dir: str, arm: str) -> str:
  return os.path.join(world_dir, "arms", arm)


def arm_seed(seed: int, arm: str) -> int:
  """A uint32 shuffle seed per (seed, arm), independent of which other arms are mixed."""
  return int(np.random.SeedSequence([int(seed) % 2**32, zlib.crc32(arm.encode())])
             .generate_state(1)[0])


def arm_dataset(world_dir: str, arm: str, *, seed: int, process_index: int = 0,
                process_count: int = 1) -> grain.MapDataset:
  """Infinite MapDataset of {"arm", "data": serialized record} for this process's slice."""
  path = arm_dir(world_dir, arm)
  if not os.path.isdir(path):
    raise ConfigError(f"data.mixture.{arm}", f"no record directory {path}")
  manifest = records.read_manifest(path)
  if not manifest.get("num_records"):
    raise ConfigError(f"data.mixture.{arm}", f"record directory {path} holds no records")
  source = grain.sources.ArrayRecordDataSource(records.shard_paths(path))
  ds = grain.MapDataset.source(source).shuffle(seed=arm_seed(seed, arm)).repeat()
  return ds[process_index::process_count].map(_TagArm(arm))


class _TagArm(grain.transforms.Map):
  """Attaches the arm name (picklable for worker processes, unlike a closure)."""

  def __init__(self, arm: str):
    self.arm = arm

  def map(self, data: bytes) -> dict:
    return {"arm": self.arm, "data": data}


def mix_arms(world_dir: str, mixture: Mapping[str, float], *, seed: int, process_index: int = 0,
             process_count: int = 1) -> grain.MapDataset:
  """Deterministic weighted interleave of the arms (grain `MapDataset.mix`), infinite."""
  weights = normalised_weights(mixture)
  arms = [arm_dataset(world_dir, arm, seed=seed, process_index=process_index,
                      process_count=process_count) for arm in weights]
  if len(arms) == 1:
    return arms[0]
  return grain.MapDataset.mix(arms, list(weights.values()))
