"""Logical axis names -> mesh shardings, driven by the rules in `config.mesh.rules`.

Sharding is configuration, not code: models annotate arrays with logical names (`embed`, `mlp`,
`activation_batch`, ...) and these helpers turn the annotations into `NamedSharding`s.
"""

from __future__ import annotations

import flax.linen as nn
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


# Logical axis -> mesh axes: the default of `config.mesh.rules`. Params use the short names,
# activations the `activation_*` names, so the batch can be split over `fsdp` while weights are
# split over it too (ZeRO-3 style).
DEFAULT_RULES = (
    ("activation_batch", ("data", "fsdp")),
    ("activation_length", None),
    ("activation_embed", None),
    ("activation_mlp", "tensor"),
    ("activation_heads", "tensor"),
    ("activation_kv", None),
    ("activation_vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("kv", None),
    ("vocab", "tensor"),
    ("patches", None),
    ("layers", None),
    ("experts", "expert"),
    ("conv_in", "fsdp"),  # conv kernels [kh, kw, in, out]: ZeRO-3 like dense kernels
    ("conv_out", "tensor"),
)

Rules = tuple[tuple[str, "str | tuple[str, ...] | None"], ...]


def logical_rules(rules) -> Rules:
  """`config.mesh.rules` (tuples, or lists after a JSON round trip) as the hashable tuple flax
  expects."""
  return tuple((str(name), tuple(axes) if isinstance(axes, (list, tuple)) else axes)
               for name, axes in rules)


def tree_shardings(logical_specs, mesh: Mesh, rules):
  """Maps a tree of logical `PartitionSpec`s (from `nn.get_partition_spec`) to `NamedSharding`s."""
  return nn.logical_to_mesh_sharding(logical_specs, mesh, rules)


def batch_sharding(mesh: Mesh, rules) -> NamedSharding:
  """Sharding of batch arrays: leading dim over the axes `activation_batch` maps to."""
  spec = nn.logical_to_mesh_axes(("activation_batch",), rules)
  return NamedSharding(mesh, P(spec[0]))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def global_batch(local_batch: dict, mesh: Mesh, rules, global_rows: int | None = None) -> dict:
  """Per-process numpy batch -> global `jax.Array`s (each process contributes its rows).

  `global_rows` must be given when processes share rows (fewer batch shards than processes);
  without it JAX infers the global batch as the processes' rows side by side.
  """
  sharding = batch_sharding(mesh, rules)
  def to_global(x):
    shape = None if global_rows is None else (global_rows,) + x.shape[1:]
    return jax.make_array_from_process_local_data(sharding, x, shape)
  return jax.tree.map(to_global, local_batch)


def abstract_params(model, example_batch: dict, mesh: Mesh, rules):
  """The params of `model` as logically boxed ShapeDtypeStructs: one trace of `model.init`,
  nothing allocated. Shardings, parameter counts and the train state all derive from it."""
  rng = jax.random.key(0)  # made outside the mesh: a compile target's mesh has no memory
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    return jax.eval_shape(model.init, rng, example_batch)["params"]


def sharded_abstract(boxed, mesh: Mesh, rules):
  """Boxed abstract tree -> unboxed ShapeDtypeStructs carrying their `NamedSharding`s (what Orbax
  restores into and `jit(out_shardings=...)` takes)."""
  shardings = tree_shardings(nn.get_partition_spec(boxed), mesh, rules)
  return jax.tree.map(lambda p, s: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=s),
                      nn.meta.unbox(boxed), shardings)
