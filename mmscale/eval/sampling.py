"""Choosing the next token from logits: greedy, temperature, top-p (nucleus), and stop handling.

Both decoding paths (KV cache and full recompute) call these same functions with the same key
per step (`jax.random.fold_in(rng, step)`), so sampled outputs agree token for token.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def top_p_mask(logits: jax.Array, top_p: float) -> jax.Array:
  """float[B, V] -> float[B, V] with every token outside the nucleus set to -inf.

  The nucleus is the smallest set of most likely tokens whose probability reaches `top_p`
  (always at least the most likely token). Ties at the threshold stay in.
  """
  if top_p >= 1.0:
    return logits
  ordered = jnp.sort(logits, axis=-1)[:, ::-1]
  probs = jax.nn.softmax(ordered, axis=-1)
  before = jnp.cumsum(probs, axis=-1) - probs  # mass of strictly more likely tokens
  keep = jnp.maximum(jnp.sum(before < top_p, axis=-1), 1)  # int[B]
  threshold = jnp.take_along_axis(ordered, (keep - 1)[:, None], axis=-1)
  return jnp.where(logits >= threshold, logits, -jnp.inf)


def select(logits: jax.Array, key: jax.Array, *, temperature: float, top_p: float) -> jax.Array:
  """float[B, V] -> int32[B]: argmax when temperature == 0, else a sample of softmax(l / T)
  restricted to the top-p nucleus."""
  if temperature <= 0.0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  scaled = top_p_mask(logits.astype(jnp.float32) / temperature, top_p)
  return jax.random.categorical(key, scaled, axis=-1).astype(jnp.int32)


def apply_stop(token: jax.Array, done: jax.Array, stop_ids: tuple[int, ...],
               pad_id: int) -> tuple[jax.Array, jax.Array]:
  """Rows already stopped emit `pad_id`; a row stops after emitting a stop token (kept).

  token int32[B], done bool[B] -> (token int32[B], done bool[B]).
  """
  token = jnp.where(done, jnp.int32(pad_id), token)
  if stop_ids:
    done = done | jnp.isin(token, jnp.asarray(stop_ids, jnp.int32))
  return token, done
