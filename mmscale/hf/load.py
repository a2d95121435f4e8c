"""Checkpoint tensors straight into a run's shardings, one tensor and one shard at a time.

For each parameter, every addressable device's shard is cut from the checkpoint tensor (per
layer, for the layer-stacked params of a scanned decoder) and placed on its device; the global
array is assembled with `jax.make_array_from_single_device_arrays`. A host holds at most one
checkpoint tensor (one layer's) plus its own devices' shards of the parameter being loaded, so a
7B decoder never sits whole in one host's memory, and every process reads only what its devices
hold. Devices holding the same shard (replicas) share one host copy.
"""

from __future__ import annotations

import math

import jax
import numpy as np

from mmscale.errors import CheckpointError
from mmscale.hf.checkpoint import Checkpoint
from mmscale.hf.mapping import Tensor


def _strip_ones(shape) -> tuple[int, ...]:
  shape = tuple(shape)
  while shape and shape[0] == 1:
    shape = shape[1:]
  return shape


def expected_hf_shape(tensor: Tensor, shape: tuple[int, ...]) -> tuple[int, ...]:
  """The checkpoint shape that fills an mmscale parameter of `shape` (one layer's)."""
  if tensor.layout == "linear":
    return (math.prod(shape[tensor.num_in:]), math.prod(shape[:tensor.num_in]))
  if tensor.layout == "conv":
    return (shape[3], shape[2], shape[0], shape[1])
  if tensor.layout == "bias":
    return (math.prod(shape),)
  return _strip_ones(shape)


def _read(ckpt: Checkpoint, tensor: Tensor, name: str, shape) -> np.ndarray:
  if name not in ckpt:
    raise CheckpointError(f"{ckpt.path}: tensor '{name}' is missing (needed for mmscale "
                          f"parameter {'/'.join(tensor.path)})")
  want, got = expected_hf_shape(tensor, shape), _strip_ones(ckpt.shape(name))
  if got != want:
    raise CheckpointError(f"{ckpt.path}: tensor '{name}' has shape {list(ckpt.shape(name))}, "
                          f"expected {list(want)} for mmscale parameter "
                          f"{'/'.join(tensor.path)} {list(shape)} (does {ckpt.field} match "
                          "the model config?)")
  return tensor.to_mmscale(ckpt.read(name), shape)


def _shard_keys(target):
  """{key: index} of the distinct shards this process holds, and each device's key."""
  index_map = target.sharding.addressable_devices_indices_map(target.shape)
  key_of = {d: tuple((s.start, s.stop, s.step) for s in idx) for d, idx in index_map.items()}
  return {key_of[d]: idx for d, idx in index_map.items()}, key_of


def _assemble(target, shards: dict, key_of: dict) -> jax.Array:
  arrays = [jax.device_put(shards[key_of[d]].astype(target.dtype), d) for d in key_of]
  return jax.make_array_from_single_device_arrays(target.shape, target.sharding, arrays)


def load_tensor(ckpt: Checkpoint, tensor: Tensor, target) -> jax.Array:
  """One unstacked parameter; `target` has .shape, .dtype and .sharding (an array or a
  ShapeDtypeStruct)."""
  full = _read(ckpt, tensor, tensor.hf_name, tuple(target.shape))
  unique, key_of = _shard_keys(target)
  return _assemble(target, {k: full[idx] for k, idx in unique.items()}, key_of)


def load_stacked(ckpt: Checkpoint, tensor: Tensor, target) -> jax.Array:
  """A layer-stacked parameter float[L, ...]: layer i from `tensor.hf_name` with '{i}' = i."""
  unique, key_of = _shard_keys(target)
  depth = target.shape[0]
  shards = {k: np.empty(tuple(len(range(*s.indices(n))) for s, n in zip(idx, target.shape)),
                        np.float32) for k, idx in unique.items()}
  for i in range(depth):
    layer = _read(ckpt, tensor, tensor.hf_name.format(i=i), tuple(target.shape[1:]))
    for k, idx in unique.items():
      layers = range(depth)[idx[0]]
      if i in layers:
        shards[k][layers.index(i)] = layer[idx[1:]]
  return _assemble(target, shards, key_of)


def check_unexpected(ckpt: Checkpoint, used: set[str], prefixes: tuple[str, ...],
                     ignored_suffixes: tuple[str, ...] = ()) -> None:
  """Fails naming the first checkpoint tensor under `prefixes` that no parameter took (a
  checkpoint with more in it than the config describes, e.g. a wrong depth)."""
  for name in ckpt.names():
    if name in used or not name.startswith(prefixes) or name.endswith(ignored_suffixes):
      continue
    raise CheckpointError(f"{ckpt.path}: unexpected tensor '{name}' (no mmscale parameter takes "
                          f"it; does {ckpt.field} match the model config?)")
