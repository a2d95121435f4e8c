"""Train state, created already sharded: abstract params -> logical specs -> jit(init,
out_shardings)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from mmscale.parallel import rules as sharding_rules


@flax.struct.dataclass
class TrainState:
  """Everything a checkpoint must hold to continue training bit-for-bit."""
  step: jax.Array
  params: Any
  opt_state: Any


def create_sharded_state(model: nn.Module, tx: optax.GradientTransformation, boxed_params,
                         example_batch: dict, mesh, rules, rng: jax.Array):
  """Initialises params and optimizer state directly into their shardings.

  Nothing is ever materialised on one device: the boxed (logically annotated) abstract params
  (`sharding_rules.abstract_params`, traced once per start) and `tx.init` of them give the
  state's structure, the rules turn it into `NamedSharding`s, and `jit(init, out_shardings)`
  makes every device compute only its own shard.
  Returns (state, state_shardings), both unboxed trees of the same structure.
  """
  def init(rng):
    params = model.init(rng, example_batch)["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))

  _, shardings = sharded_abstract_state(tx, boxed_params, mesh, rules)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    state = jax.jit(init, out_shardings=shardings)(rng)
  return nn.meta.unbox(state), shardings


def sharded_abstract_state(tx: optax.GradientTransformation, boxed_params, mesh, rules):
  """The train state as ShapeDtypeStructs carrying their `NamedSharding`s, and the shardings:
  what `create_sharded_state` builds, with nothing allocated (the compile tool lowers the train
  step on it). Returns (abstract state, state_shardings), unboxed trees of one structure."""
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    boxed = TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=boxed_params,
                       opt_state=jax.eval_shape(tx.init, boxed_params))
    shardings = sharding_rules.tree_shardings(nn.get_partition_spec(boxed), mesh, rules)
  # Shardings lead: a frozen group's optimizer state is an empty node (optax MaskedNode) where
  # the shardings tree holds one sharding, which stays a valid prefix for jit.
  abstract = jax.tree.map(
      lambda s, sub: jax.tree.map(
          lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), sub),
      shardings, nn.meta.unbox(boxed), is_leaf=lambda s: isinstance(s, jax.sharding.Sharding))
  return abstract, shardings


def abstract_state(state):
  """ShapeDtypeStructs with shardings, the target Orbax restores into."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
