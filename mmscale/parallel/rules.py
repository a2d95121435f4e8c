"""Logical axis names -> mesh shardings, driven by the rules in `config.mesh.rules`.

Sharding is configuration, not code: models annotate arrays with logical names (`embed`, `mlp`,
`activation_batch`, ...) and these helpers turn the annotations into `NamedSharding`s.
"""

from __future__ import annotations

import flax.linen as nn
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def logical_rules(config) -> tuple[tuple[str, str | tuple[str, ...] | None], ...]:
  """The config's rules as the hashable tuple flax expects."""
  return tuple((name, tuple(axes) if isinstance(axes, list) else axes)
               for name, axes in config.mesh.rules)


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


def param_shardings(model, example_batch: dict, mesh: Mesh, rules):
  """`NamedSharding`s of `model`'s params, from its logical annotations (no params are built)."""
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    abstract = jax.eval_shape(model.init, jax.random.key(0), example_batch)["params"]
    shardings = tree_shardings(nn.get_partition_spec(abstract), mesh, rules)
  return nn.meta.unbox(abstract), shardings
