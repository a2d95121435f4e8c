"""KV-cached greedy decoding over one or more model passes, each with its own optional erasure.

A "pass" is the model with an erase spec or none; every pass keeps its own KV cache (an erased
pass's keys come from erased hidden states, so caches cannot be shared). Per step, the passes'
next-token logits are combined (`combine`) and the argmax is fed to every pass. One pass without
erasure is plain greedy decoding (same prompt layout as mmscale/eval/generate.py: left-padded, one
scalar cache index).

Erase spec of a pass: (layers, modality) with layers = {"centroids": float[depth, k, D],
"active": bool[depth]} (`centroids.erase_layers`) and modality "text" | "image"; the per-call
position mask is derived here: the prompt's modality mask at prefill, and for generated tokens
(always text) all-ones for "text", all-zeros for "image".
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from mmscale.analysis.hidden import modality_masks
from mmscale.eval.generate import init_cache

ErasePass = tuple[dict, str] | None


def _erase(spec: ErasePass, mask: jax.Array | None):
  if spec is None:
    return None
  layers, _ = spec
  return {"centroids": layers["centroids"], "active": layers["active"], "mask": mask}


def _prompt_mask(spec: ErasePass, prompt: dict):
  return None if spec is None else modality_masks(prompt)[spec[1]]


def _step_mask(spec: ErasePass, rows: int):
  if spec is None:
    return None
  return jnp.full((rows, 1), spec[1] == "text", jnp.bool_)


def cached_decode(model, params, prompt: dict, passes: Sequence[ErasePass],
                  combine: Callable[[list[jax.Array]], jax.Array], *, max_new_tokens: int):
  """Greedy decoding of `prompt` (left-padded, docs/contracts.md §4) over several passes.

  combine: list of float32[B, V] next-token logits (one per pass, in order) -> float32[B, V].
  Returns int32[B, max_new_tokens]. Traceable (callers jit it).
  """
  rows, prompt_len = prompt["tokens"].shape
  cache_len = prompt_len + max_new_tokens
  caches, first_logits = [], []
  for spec in passes:
    cache = init_cache(model, rows, cache_len, prompt)
    logits, mutated = model.apply({"params": params, "cache": cache}, prompt, decode=True,
                                  erase=_erase(spec, _prompt_mask(spec, prompt)),
                                  mutable=["cache"])
    caches.append(mutated["cache"])
    first_logits.append(logits[:, -1])
  first = jnp.argmax(combine(first_logits), axis=-1).astype(jnp.int32)
  last_pos = prompt["positions"][:, -1]

  def body(carry, i):
    token, caches = carry
    step = {"tokens": token[:, None], "positions": (last_pos + 1 + i)[:, None],
            "segment_ids": jnp.ones((rows, 1), jnp.int32),
            "mask_ar": jnp.ones((rows, 1), jnp.int32)}
    new_caches, logits = [], []
    for spec, cache in zip(passes, caches):
      out, mutated = model.apply({"params": params, "cache": cache}, step, decode=True,
                                 erase=_erase(spec, _step_mask(spec, rows)), mutable=["cache"])
      new_caches.append(mutated["cache"])
      logits.append(out[:, -1])
    nxt = jnp.argmax(combine(logits), axis=-1).astype(jnp.int32)
    return (nxt, new_caches), token

  if max_new_tokens == 1:
    return first[:, None]
  (last, _), tokens = jax.lax.scan(body, (first, caches), jnp.arange(max_new_tokens - 1))
  return jnp.concatenate([tokens.T, last[:, None]], axis=1)


@functools.partial(jax.jit, static_argnames=("model", "modality", "max_new_tokens"))
def erased_generate(model, params, prompt: dict, layers: dict | None = None, *,
                    modality: str = "text", max_new_tokens: int) -> jax.Array:
  """Greedy decoding with `modality` hidden states replaced by centroids at the active layers
  of `layers` (None: plain greedy decoding). Returns int32[B, max_new_tokens]."""
  spec = None if layers is None else (layers, modality)
  return cached_decode(model, params, prompt, [spec], lambda ls: ls[0],
                       max_new_tokens=max_new_tokens)
