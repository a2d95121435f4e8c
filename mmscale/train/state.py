"""Train state, created already sharded: eval_shape -> logical specs -> jit(init, out_shardings)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmscale.data.batch_spec import example_batch

from mmscale.parallel import rules as sharding_rules


@flax.struct.dataclass
class TrainState:
  """Everything a checkpoint must hold to continue training bit-for-bit."""
  step: jax.Array
  params: Any
  opt_state: Any


def count_params(params) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def create_sharded_state(model: nn.Module, tx: optax.GradientTransformation, config, mesh, rules,
                         rng: jax.Array):
  """Initialises params and optimizer state directly into their shardings.

  Nothing is ever materialised on one device: `jax.eval_shape` gives the boxed (logically
  annotated) structure, the rules turn it into `NamedSharding`s, and `jit(init, out_shardings)`
  makes every device compute only its own shard.
  Returns (state, state_shardings), both unboxed trees of the same structure.
  """
  batch = example_batch(config, rows=1)

  def init(rng):
    params = model.init(rng, batch)["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))

  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    abstract = jax.eval_shape(init, rng)
    specs = nn.get_partition_spec(abstract)
    shardings = sharding_rules.tree_shardings(specs, mesh, rules)
    state = jax.jit(init, out_shardings=shardings)(rng)
  return nn.meta.unbox(state), shardings


def abstract_state(state):
  """ShapeDtypeStructs with shardings, the target Orbax restores into."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
