"""Optimizer and learning-rate schedule (optax)."""

from __future__ import annotations

import math

import jax
import optax


def mm1_learning_rate(num_params: int) -> float:
  """MM1's fitted rule (arXiv 2403.09611): lr = exp(-0.4214 ln N - 0.5535), N = parameters."""
  return math.exp(-0.4214 * math.log(num_params) - 0.5535)


def peak_learning_rate(optim_config, num_params: int) -> float:
  rules = {"constant": lambda: optim_config.lr, "mm1": lambda: mm1_learning_rate(num_params)}
  return rules[optim_config.lr_rule]()


def make_schedule(optim_config, total_steps: int, num_params: int) -> optax.Schedule:
  """Linear warmup then cosine decay to `end_lr_fraction` of the peak (MM1 decays to 10%)."""
  peak = peak_learning_rate(optim_config, num_params)
  warmup = min(optim_config.warmup_steps, max(total_steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak, warmup_steps=warmup,
      decay_steps=max(total_steps, warmup + 1), end_value=peak * optim_config.end_lr_fraction)


def decay_mask(params):
  """Weight decay on matrices only; norms' scales and biases (rank < 2) are not decayed."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(optim_config, total_steps: int, num_params: int):
  """AdamW with global-norm clipping. Returns (optax transformation, schedule).

  optax's decoupled decay multiplies `weight_decay` by the learning rate, so `weight_decay=0.1`
  gives MM1's per-step decay of 0.1 x lr.
  """
  schedule = make_schedule(optim_config, total_steps, num_params)
  tx = optax.chain(
      optax.clip_by_global_norm(optim_config.grad_clip),
      optax.adamw(schedule, b1=optim_config.b1, b2=optim_config.b2, eps=optim_config.eps,
                  weight_decay=optim_config.weight_decay, mask=decay_mask))
  return tx, schedule
