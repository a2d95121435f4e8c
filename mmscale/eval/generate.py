"""Batched autoregressive decoding: one jitted prefill + a scanned decode step with a KV cache.

Prompts are left-padded to a common length (`mmscale.data.batch.one_per_row(..., pad="left")`), so every row's next token lands in the same cache
column and one scalar cache index serves the whole batch. Padding has segment id 0 and is never
attended to.

Decoding runs one or more *passes* (`Pass`: a model, its apply arguments, a prompt transform),
each with its own params and its own KV cache. A `logits_processor` combines their next-token
logits before the token is chosen (greedy / temperature / top-p, `sampling.py`). One pass with
no processor is plain decoding; two passes with `(1 + a) * l0 - a * l1` is contrastive decoding
(the second pass may use other params, another module, e.g. one with hidden-state hooks, another
prompt, e.g. without images, or its own `apply`, e.g. `erasure.ErasedPass`; TCCD,
`contrastive.py`). `processor_args` are traced arguments of the processor (e.g. a contrast
weight), so changing them reuses the compilation. `generate(..., use_cache=False)` is the
reference that re-runs the full sequence for every token; both paths share the token choice, so
they agree token for token (tests/test_eval_generate.py).

Everything static (models, processor, sampling settings) is a jit static argument: pass the same
objects (module-level functions, not fresh lambdas) to reuse compilations.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mmscale.eval import sampling

# logits_processor(pass_logits: tuple[float[B, V], ...], step: int32[]) -> float[B, V], or with
# `generate(..., processor_args=A)`: logits_processor(pass_logits, step, A) (A traced).
LogitsProcessor = Callable[[tuple, jax.Array], jax.Array]
PROMPT_KEYS = ("tokens", "positions", "segment_ids", "mask_ar", "mask_loss")


@dataclasses.dataclass(frozen=True)
class Pass:
  """One forward pass producing next-token logits.

  model: any module with the MLLM call signature `(batch, decode=...) -> float[B, T, V]`.
  prompt_fn: batch -> batch of the same shapes (e.g. images dropped); None keeps the prompt.
  apply_kwargs: extra `model.apply` keyword arguments as (name, value) pairs (hashable).
  """
  model: nn.Module
  prompt_fn: Callable | None = None
  apply_kwargs: tuple = ()

  def prompt(self, batch: dict) -> dict:
    return self.prompt_fn(batch) if self.prompt_fn is not None else batch

  def apply(self, variables: dict, batch: dict, **kwargs):
    return self.model.apply(variables, batch, **dict(self.apply_kwargs), **kwargs)


@dataclasses.dataclass(frozen=True)
class DecodeSettings:
  """How tokens are chosen (static under jit). temperature 0 = greedy."""
  max_new_tokens: int
  temperature: float = 0.0
  top_p: float = 1.0
  stop_ids: tuple[int, ...] = ()
  pad_id: int = 0
  logits_processor: LogitsProcessor | None = None
  valid_vocab: int = 0  # > 0: ids >= this are never chosen (model vocab padded past the tokenizer)


def init_cache(model: nn.Module, batch_rows: int, cache_len: int, prompt: dict):
  """Zero KV cache for `batch_rows` x `cache_len` (shapes only: no params are initialised)."""
  template = {k: jnp.zeros((batch_rows, cache_len) + v.shape[2:], v.dtype)
              for k, v in prompt.items() if k not in ("images", "image_positions")}
  if "images" in prompt:
    template["images"] = prompt["images"]
    template["image_positions"] = jnp.full(prompt["image_positions"].shape, cache_len, jnp.int32)
  shapes = jax.eval_shape(functools.partial(model.init, decode=True), jax.random.key(0), template)
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), nn.meta.unbox(shapes["cache"]))


def _choose(settings: DecodeSettings, pass_logits: tuple, step, rng, done, args=None):
  """The shared token choice of both paths: combine passes, select, apply stops."""
  if settings.valid_vocab:
    valid = jnp.arange(pass_logits[0].shape[-1]) < settings.valid_vocab
    pass_logits = tuple(jnp.where(valid, x, -jnp.inf) for x in pass_logits)
  if settings.logits_processor is None:
    logits = pass_logits[0]
  elif args is None:
    logits = settings.logits_processor(tuple(pass_logits), step)
  else:
    logits = settings.logits_processor(tuple(pass_logits), step, args)
  token = sampling.select(logits, jax.random.fold_in(rng, step),
                          temperature=settings.temperature, top_p=settings.top_p)
  return sampling.apply_stop(token, done, settings.stop_ids, settings.pad_id)


@functools.partial(jax.jit, static_argnames=("passes", "settings"))
def _generate_cached(passes: tuple, params: tuple, prompt: dict, rng, args, *,
                     settings: DecodeSettings) -> jax.Array:
  rows, prompt_len = prompt["tokens"].shape
  n = settings.max_new_tokens
  caches, first = [], []
  for p, prm in zip(passes, params):
    batch = p.prompt(prompt)
    cache = init_cache(p.model, rows, prompt_len + n, batch)
    logits, mutated = p.apply({"params": prm, "cache": cache}, batch, decode=True,
                              mutable=["cache"])
    caches.append(mutated["cache"])
    first.append(logits[:, -1])
  token, done = _choose(settings, tuple(first), jnp.int32(0), rng, jnp.zeros((rows,), bool),
                        args)
  last_pos = prompt["positions"][:, -1]
  ones = jnp.ones((rows, 1), jnp.int32)

  def body(carry, i):
    token, done, caches = carry
    step = {"tokens": token[:, None], "positions": (last_pos + i)[:, None],
            "segment_ids": ones, "mask_ar": ones}
    logits, new_caches = [], []
    for p, prm, cache in zip(passes, params, caches):
      out, mutated = p.apply({"params": prm, "cache": cache}, step, decode=True,
                             mutable=["cache"])
      logits.append(out[:, -1])
      new_caches.append(mutated["cache"])
    nxt, done = _choose(settings, tuple(logits), i, rng, done, args)
    return (nxt, done, tuple(new_caches)), token

  if n == 1:
    return token[:, None]
  (last, _, _), tokens = jax.lax.scan(body, (token, done, tuple(caches)),
                                      jnp.arange(1, n, dtype=jnp.int32))
  return jnp.concatenate([tokens.T, last[:, None]], axis=1)


def _grow(prompt: dict, n: int) -> dict:
  """The prompt with n more columns for generated tokens (causal, segment 1)."""
  rows, prompt_len = prompt["tokens"].shape
  total = prompt_len + n
  grow = lambda x, fill: jnp.concatenate([x, jnp.full((rows, n), fill, x.dtype)], axis=1)
  batch = dict(prompt)
  batch["tokens"] = grow(prompt["tokens"], 0)
  batch["positions"] = jnp.concatenate(
      [prompt["positions"], prompt["positions"][:, -1:] + 1 + jnp.arange(n)], axis=1)
  batch["segment_ids"] = grow(prompt["segment_ids"], 1)
  batch["mask_ar"] = grow(prompt["mask_ar"], 1)
  batch["mask_loss"] = grow(prompt["mask_loss"], 0)
  if "image_positions" in prompt:
    batch["image_positions"] = jnp.where(prompt["image_positions"] >= prompt_len, total,
                                         prompt["image_positions"])
  return batch


@functools.partial(jax.jit, static_argnames=("passes", "settings"))
def _generate_recompute(passes: tuple, params: tuple, prompt: dict, rng, args, *,
                        settings: DecodeSettings) -> jax.Array:
  rows, prompt_len = prompt["tokens"].shape
  batch = _grow(prompt, settings.max_new_tokens)

  def body(carry, i):
    tokens, done = carry
    full = dict(batch, tokens=tokens)
    logits = tuple(p.apply({"params": prm}, p.prompt(full))[:, prompt_len + i - 1]
                   for p, prm in zip(passes, params))
    nxt, done = _choose(settings, logits, i, rng, done, args)
    return (tokens.at[:, prompt_len + i].set(nxt), done), nxt

  _, out = jax.lax.scan(body, (batch["tokens"], jnp.zeros((rows,), bool)),
                        jnp.arange(settings.max_new_tokens, dtype=jnp.int32))
  return out.T


def generate(model: nn.Module | tuple[Pass, ...], params: Any, prompt: dict, *,
             max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
             stop_ids: tuple[int, ...] = (), pad_id: int = 0, rng: jax.Array | None = None,
             logits_processor: LogitsProcessor | None = None, processor_args: Any = None,
             valid_vocab: int = 0, use_cache: bool = True) -> jax.Array:
  """Continuation of a left-padded prompt batch (`batch.one_per_row(..., pad="left")`).

  Args:
    model: a model (one pass), or a tuple of `Pass`es; then `params` is a same-length tuple.
    prompt: a batch (mmscale/data/batch.py) with T_p columns; may be sharded over the batch.
    max_new_tokens: N, the generated length (a row stops early only by a stop token).
    temperature, top_p: 0 = greedy; else sampling with key `fold_in(rng, step)`.
    stop_ids: a row emitting one of these keeps it and then emits `pad_id`.
    logits_processor: combines the passes' float[B, V] logits (default: the first pass's).
    processor_args: a pytree of arrays given to the processor as its third argument (traced:
      new values reuse the compilation); None calls it with (pass_logits, step).
    valid_vocab: > 0 masks ids >= valid_vocab in every pass (the tokenizer's size when the
      model's vocabulary is padded beyond it, so decoded ids are always decodable).
    use_cache: False = the full-recompute reference (N full forward passes).
  Returns: int32[B, N] generated tokens.
  """
  fn, args, settings = _program(
      model, params, prompt, max_new_tokens=max_new_tokens, temperature=temperature,
      top_p=top_p, stop_ids=stop_ids, pad_id=pad_id, rng=rng, logits_processor=logits_processor,
      processor_args=processor_args, valid_vocab=valid_vocab, use_cache=use_cache)
  return fn(*args, settings=settings)


def lower_generate(model, params, prompt: dict, **options) -> jax.stages.Lowered:
  """The one program `generate(model, params, prompt, **options)` runs (the prefill and the
  scanned decode steps, with the KV cache), lowered and not run: `params` and `prompt` may be
  ShapeDtypeStructs carrying shardings. `python -m mmscale.compile --step=generate` compiles it
  for a TPU slice."""
  fn, args, settings = _program(model, params, prompt, **options)
  return fn.lower(*args, settings=settings)


def _program(model, params, prompt: dict, *, max_new_tokens: int, temperature: float = 0.0,
             top_p: float = 1.0, stop_ids: tuple[int, ...] = (), pad_id: int = 0, rng=None,
             logits_processor: LogitsProcessor | None = None, processor_args: Any = None,
             valid_vocab: int = 0, use_cache: bool = True):
  """(jitted function, its positional arguments, its static settings) of a `generate` call."""
  if isinstance(model, nn.Module):
    passes, params = (Pass(model),), (params,)
  else:
    passes, params = tuple(model), tuple(params)
  if len(passes) != len(params):
    raise ValueError(f"{len(passes)} passes but {len(params)} params")
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
  settings = DecodeSettings(int(max_new_tokens), float(temperature), float(top_p),
                            tuple(int(s) for s in stop_ids), int(pad_id), logits_processor,
                            int(valid_vocab))
  rng = jax.random.key(0) if rng is None else rng
  fn = _generate_cached if use_cache else _generate_recompute
  return fn, (passes, params, prompt, rng, processor_args), settings


def greedy_generate(model: nn.Module, params, prompt: dict, *, max_new_tokens: int) -> jax.Array:
  """Greedy continuation with the KV cache: int32[B, max_new_tokens]."""
  return generate(model, params, prompt, max_new_tokens=max_new_tokens)


def greedy_generate_recompute(model: nn.Module, params, prompt: dict, *,
                              max_new_tokens: int) -> jax.Array:
  """The reference: greedy decoding by re-running the full sequence for every new token."""
  return generate(model, params, prompt, max_new_tokens=max_new_tokens, use_cache=False)


def cut_at_stop(tokens: np.ndarray, stop_ids: tuple[int, ...]) -> list[list[int]]:
  """Per row, the generated ids before the first stop token."""
  rows = []
  for row in np.asarray(tokens).tolist():
    cut = next((i for i, t in enumerate(row) if t in stop_ids), len(row))
    rows.append(row[:cut])
  return rows
