"""Next-token cross-entropy over packed multimodal sequences, with optional z-loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def target_weights(batch: dict) -> jax.Array:
  """float32[B, T-1]: 1 where logits at t must predict tokens[t+1].

  A target counts when the data marks it (`mask_loss[t+1]`) and it belongs to the same packed
  example as the position predicting it, so no example learns to predict its neighbour's start.
  """
  seg = batch["segment_ids"]
  same = (seg[:, 1:] == seg[:, :-1]) & (seg[:, 1:] != 0)
  return (batch["mask_loss"][:, 1:] > 0).astype(jnp.float32) * same.astype(jnp.float32)


def loss_sums(logits: jax.Array, batch: dict, z_loss: float = 0.0) -> dict[str, jax.Array]:
  """Summed (not averaged) losses, so gradient accumulation over microbatches stays exact.

  Args:
    logits: float[B, T, V] (any dtype; computed in float32).
    batch: the batch of docs/contracts.md §4.
    z_loss: weight of the PaLM z-loss `log(Z)^2`, keeping the softmax normaliser near 1.
  Returns:
    {'nll': sum of token NLLs, 'z': sum of log(Z)^2, 'weight': number of targets, 'correct': argmax hits}
  """
  # Full-length arrays with the last column weighted 0, rather than slicing `logits[:, :-1]`:
  # the slice would copy the largest activation of the step ([B, T, V]).
  logits = logits.astype(jnp.float32)
  targets = jnp.pad(batch["tokens"][:, 1:], ((0, 0), (0, 1)))
  weights = jnp.pad(target_weights(batch), ((0, 0), (0, 1)))
  max_logit = jax.lax.stop_gradient(jnp.max(logits, axis=-1))
  log_z = max_logit + jnp.log(jnp.sum(jnp.exp(logits - max_logit[..., None]), axis=-1))
  target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  nll = (log_z - target_logit) * weights
  correct = (target_logit >= max_logit) * weights  # argmax hit, without a second pass over V
  return {"nll": nll.sum(), "z": z_loss * (jnp.square(log_z) * weights).sum(),
          "weight": weights.sum(), "correct": correct.sum()}
