"""The jitted train step: microbatched gradient accumulation, one optimizer update, metrics."""

from __future__ import annotations


import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmscale.parallel import rules as sharding_rules
from mmscale.models.fused_loss import fused_loss_sums, loss_block_rows
from mmscale.models.moe import MOE_METRICS, aux_terms
from mmscale.train.state import TrainState


def _microbatches(batch: dict, num: int) -> dict:
  """[B, ...] -> [num, B/num, ...]: strided split, so each microbatch keeps rows of every shard."""
  return jax.tree.map(lambda x: x.reshape(x.shape[0] // num, num, *x.shape[1:]).swapaxes(0, 1), batch)


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, schedule, config, mesh,
                    rules, state_shardings):
  """Returns `step(state, batch) -> (state, metrics)`, jitted with explicit shardings + donation.

  Losses are sums over microbatches divided by the total target count, so accumulating A
  microbatches gives exactly the gradient of one big batch.
  """
  z_loss = float(config.model.decoder.z_loss)
  softcap = float(config.model.decoder.final_logit_softcap)
  accum = int(config.optim.grad_accum_steps)
  batch_sharding = sharding_rules.batch_sharding(mesh, rules)
  dropout = config.model.decoder.dropout_rate > 0
  dropout_key = jax.random.key(config.seed + 1)
  d = config.model.decoder
  moe = bool(d.moe_every)
  sum_keys = ("nll", "z", "weight", "correct") + (MOE_METRICS if moe else ())
  batch_axes = batch_sharding.spec[0] if batch_sharding.spec else None
  batch_axes = (batch_axes,) if isinstance(batch_axes, str) else tuple(batch_axes or ())
  batch_shards = int(np.prod([mesh.shape[axis] for axis in batch_axes]))
  loss_rows = loss_block_rows(float(config.train.loss_block_mib), d.vocab_size, batch_shards)

  def loss_sums(hidden, matrix, micro):
    return fused_loss_sums(hidden, matrix, micro, z_loss, softcap, loss_rows)

  def sums_fn(params, micro, step):
    rngs = {"dropout": jax.random.fold_in(dropout_key, step)} if dropout else None
    kwargs = dict(deterministic=not dropout, rngs=rngs, features_only=True)
    if not moe:
      hidden, matrix = model.apply({"params": params}, micro, **kwargs)
      sums = loss_sums(hidden, matrix, micro)
      return sums.pop("objective"), sums
    (hidden, matrix), state = model.apply({"params": params}, micro, mutable=["moe"], **kwargs)
    sums = loss_sums(hidden, matrix, micro)
    objective = sums.pop("objective")
    # Router losses are per-token means; weighting them by this microbatch's target count keeps
    # the accumulated total / total targets an average over microbatches.
    aux, stats = aux_terms(state["moe"], float(d.load_balance_loss), float(d.router_z_loss))
    sums.update({k: v * sums["weight"] for k, v in stats.items()})
    return objective + aux * sums["weight"], sums

  grad_fn = jax.grad(sums_fn, has_aux=True)

  def step(state: TrainState, batch: dict):
    with nn.logical_axis_rules(rules):
      if accum == 1:
        grads, sums = grad_fn(state.params, batch, state.step * accum)
      else:
        def body(carry, xs):
          index, micro = xs
          micro = jax.lax.with_sharding_constraint(micro, batch_sharding)
          grads, sums = grad_fn(state.params, micro, state.step * accum + index)
          return jax.tree.map(jnp.add, carry, (grads, sums)), None
        zeros = jax.tree.map(jnp.zeros_like, state.params)
        init = (zeros, {k: jnp.zeros((), jnp.float32) for k in sum_keys})
        (grads, sums), _ = jax.lax.scan(body, init, (jnp.arange(accum), _microbatches(batch, accum)))
    weight = jnp.maximum(sums["weight"], 1.0)
    grads = jax.tree.map(lambda g: g / weight, grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        "loss": sums["nll"] / weight, "z_loss": sums["z"] / weight,
        "token_accuracy": sums["correct"] / weight, "targets": sums["weight"],
        "grad_norm": optax.tree.norm(grads), "lr": schedule(state.step),
        **{k: sums[k] / weight for k in sum_keys if k.startswith("moe_")},
        "param_norm": optax.tree.norm(params),  # of the updated params: the divergence guard
    }
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return jax.jit(step, in_shardings=(state_shardings, batch_sharding),
                 out_shardings=(state_shardings, sharding_rules.replicated(mesh)), donate_argnums=0)

