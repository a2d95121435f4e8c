"""Optimizer and learning-rate schedule (optax)."""

from __future__ import annotations

import math
import re

import jax
import optax

from mmscale.errors import ConfigError


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


def param_path(path) -> str:
  """A pytree key path -> 'vit/block_0/attn/query/kernel' (dict keys only, so boxed
  (logically partitioned) and plain trees give the same names)."""
  return "/".join(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))


FROZEN = "frozen"


def group_labels(optim_config):
  """params -> the same tree of labels: 'frozen' where a path fully matches a pattern of
  `optim.freeze`, else 'lr<i>' for the first (pattern, multiplier) of `optim.lr_multipliers`
  that matches, else 'lr' (the base rate). A pattern matching no parameter is an error (a typo
  would otherwise silently train everything)."""
  freeze = [re.compile(p) for p in optim_config.freeze]
  groups = [(re.compile(p), f"lr{i}") for i, (p, _) in enumerate(optim_config.lr_multipliers)]

  def labels(params):
    paths = [param_path(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    for field, patterns in (("optim.freeze", freeze),
                            ("optim.lr_multipliers", [g for g, _ in groups])):
      for pattern in patterns:
        if not any(pattern.fullmatch(path) for path in paths):
          raise ConfigError(field, f"pattern '{pattern.pattern}' matches no parameter "
                            f"(paths look like '{paths[0]}')")

    def label(path, _):
      name = param_path(path)
      if any(p.fullmatch(name) for p in freeze):
        return FROZEN
      return next((g for p, g in groups if p.fullmatch(name)), "lr")
    return jax.tree_util.tree_map_with_path(label, params)
  return labels


def make_optimizer(optim_config, total_steps: int, num_params: int):
  """AdamW with global-norm clipping. Returns (optax transformation, schedule).

  optax's decoupled decay multiplies `weight_decay` by the learning rate, so `weight_decay=0.1`
  gives MM1's per-step decay of 0.1 x lr.

  Training from pretrained parts (docs/pretrained.md): parameters matching `optim.freeze` get no
  updates and no optimizer state (their gradients are zeroed before clipping, so they do not
  count in the global norm), and `optim.lr_multipliers` ((pattern, multiplier) pairs) scale the
  schedule per group, through `optax.multi_transform`.
  """
  schedule = make_schedule(optim_config, total_steps, num_params)

  def adamw(multiplier):
    rate = schedule if multiplier == 1.0 else (lambda step: multiplier * schedule(step))
    return optax.adamw(rate, b1=optim_config.b1, b2=optim_config.b2, eps=optim_config.eps,
                       weight_decay=optim_config.weight_decay, mask=decay_mask)

  if not optim_config.freeze and not optim_config.lr_multipliers:
    tx = optax.chain(optax.clip_by_global_norm(optim_config.grad_clip), adamw(1.0))
    return tx, schedule
  labels = group_labels(optim_config)
  transforms = {"lr": adamw(1.0), FROZEN: optax.set_to_zero()}
  transforms.update({f"lr{i}": adamw(float(m))
                     for i, (_, m) in enumerate(optim_config.lr_multipliers)})
  frozen = lambda params: jax.tree.map(lambda l: l == FROZEN, labels(params))
  tx = optax.chain(optax.masked(optax.set_to_zero(), frozen),
                   optax.clip_by_global_norm(optim_config.grad_clip),
                   optax.multi_transform(transforms, labels))
  return tx, schedule
