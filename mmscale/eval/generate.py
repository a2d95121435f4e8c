"""Batched autoregressive decoding with a KV cache (jitted prefill + scanned decode steps).

Prompts are left-padded to a common length, so every row's next token lands in the same cache
column and one scalar cache index serves the whole batch. Padding has segment id 0 and is never
attended to.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def left_pad(examples: list[dict], length: int, image_slots: int, num_image_tokens: int,
             image_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
  """Stacks unpacked prompt examples into a left-padded batch of docs/contracts.md §4.

  Args:
    examples: dicts with `tokens`, `mask_ar` (int[L_i]), `images` (float[n_i, H, W, 3]) and
      `image_positions` (int[n_i * K], the index of each image token), as
      `mmscale.data.transforms.ExampleBuilder(..., prompt_only=True)` makes them.
    length: common prompt length T_p >= every L_i.
  Returns: the batch, int32[B, T_p] fields, `images` float32[B, M, H, W, 3] and
    `image_positions` int32[B, M*K] (T_p for unused slots).
  """
  b = len(examples)
  out = {k: np.zeros((b, length), np.int32)
         for k in ("tokens", "positions", "segment_ids", "mask_ar", "mask_loss")}
  out["images"] = np.zeros((b, image_slots, *image_shape), np.float32)
  out["image_positions"] = np.full((b, image_slots * num_image_tokens), length, np.int32)
  for row, ex in enumerate(examples):
    n = len(ex["tokens"])
    if n > length:
      raise ValueError(f"prompt of {n} tokens exceeds the prompt length {length}")
    pad = length - n
    out["tokens"][row, pad:] = ex["tokens"]
    out["mask_ar"][row, pad:] = ex["mask_ar"]
    out["positions"][row, pad:] = np.arange(n)
    out["segment_ids"][row, pad:] = 1
    images = np.asarray(ex["images"])[:image_slots]
    out["images"][row, :len(images)] = images
    positions = np.asarray(ex["image_positions"])[:image_slots * num_image_tokens]
    out["image_positions"][row, :len(positions)] = pad + positions
  return out


def init_cache(model: nn.Module, batch_rows: int, cache_len: int, prompt: dict):
  """Zero KV cache for `batch_rows` x `cache_len` (shapes only: no params are initialised)."""
  template = {k: jnp.zeros((batch_rows, cache_len) + v.shape[2:], v.dtype)
              for k, v in prompt.items() if k not in ("images", "image_positions")}
  template["images"] = prompt["images"]
  template["image_positions"] = jnp.full(prompt["image_positions"].shape, cache_len, jnp.int32)
  shapes = jax.eval_shape(functools.partial(model.init, decode=True), jax.random.key(0), template)
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), nn.meta.unbox(shapes["cache"]))


@functools.partial(jax.jit, static_argnames=("model", "max_new_tokens"))
def greedy_generate(model: nn.Module, params, prompt: dict, *, max_new_tokens: int) -> jax.Array:
  """Greedy continuation of a left-padded prompt batch.

  Args:
    prompt: batch of docs/contracts.md §4 with T_p columns, left-padded (see `left_pad`).
  Returns: int32[B, max_new_tokens] generated tokens (callers cut at the first EOS).
  """
  rows, prompt_len = prompt["tokens"].shape
  cache = init_cache(model, rows, prompt_len + max_new_tokens, prompt)
  logits, mutated = model.apply({"params": params, "cache": cache}, prompt, decode=True,
                                mutable=["cache"])
  first = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)
  last_pos = prompt["positions"][:, -1]

  def body(carry, i):
    token, cache = carry
    step = {"tokens": token[:, None], "positions": (last_pos + 1 + i)[:, None],
            "segment_ids": jnp.ones((rows, 1), jnp.int32), "mask_ar": jnp.ones((rows, 1), jnp.int32)}
    logits, mutated = model.apply({"params": params, "cache": cache}, step, decode=True,
                                  mutable=["cache"])
    nxt = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)
    return (nxt, mutated["cache"]), token

  (last, _), tokens = jax.lax.scan(body, (first, mutated["cache"]), jnp.arange(max_new_tokens - 1))
  return jnp.concatenate([tokens.T, last[:, None]], axis=1) if max_new_tokens > 1 else first[:, None]


@functools.partial(jax.jit, static_argnames=("model", "max_new_tokens"))
def greedy_generate_recompute(model: nn.Module, params, prompt: dict, *,
                              max_new_tokens: int) -> jax.Array:
  """The reference: greedy decoding by re-running the full sequence for every new token."""
  rows, prompt_len = prompt["tokens"].shape
  total = prompt_len + max_new_tokens
  grow = lambda x, fill: jnp.concatenate(
      [x, jnp.full((rows, max_new_tokens), fill, x.dtype)], axis=1)
  batch = dict(prompt)
  batch["tokens"] = grow(prompt["tokens"], 0)
  batch["positions"] = jnp.concatenate(
      [prompt["positions"], prompt["positions"][:, -1:] + 1 + jnp.arange(max_new_tokens)], axis=1)
  batch["segment_ids"] = grow(prompt["segment_ids"], 1)
  batch["mask_ar"] = grow(prompt["mask_ar"], 1)
  batch["mask_loss"] = grow(prompt["mask_loss"], 0)
  batch["image_positions"] = jnp.where(prompt["image_positions"] >= prompt_len, total,
                                       prompt["image_positions"])

  def body(tokens, t):
    logits = model.apply({"params": params}, dict(batch, tokens=tokens))
    nxt = jnp.argmax(logits[:, t - 1], axis=-1).astype(jnp.int32)
    return tokens.at[:, t].set(nxt), nxt

  _, out = jax.lax.scan(body, batch["tokens"], prompt_len + jnp.arange(max_new_tokens))
  return out.T


def cut_at_stop(tokens: np.ndarray, stop_ids: tuple[int, ...]) -> list[list[int]]:
  """Per row, the generated ids before the first stop token."""
  rows = []
  for row in np.asarray(tokens).tolist():
    cut = next((i for i, t in enumerate(row) if t in stop_ids), len(row))
    rows.append(row[:cut])
  return rows
