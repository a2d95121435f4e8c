"""Log-likelihood of each example's target tokens, per example (one example per row).

The scoring primitive of format-free evaluation (`choice.py`): an example is a prompt (image,
question; no loss) and a continuation (loss), built by the run's `ExampleBuilder`, so a
continuation's tokens are exactly those training supervises, EOS included. Rows go through the
one batch builder (`one_per_row`) and `Run.to_global`, like every other evaluator.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mmscale.data.batch import batches_of, one_per_row
from mmscale.models.loss import target_weights
from mmscale.runtime import Run


@functools.partial(jax.jit, static_argnames=("model",))
def _row_logprobs(model: nn.Module, params, batch: dict):
  """(float32[B] summed target log-probabilities, float32[B] target counts)."""
  logits = model.apply({"params": params}, batch).astype(jnp.float32)[:, :-1]
  targets = batch["tokens"][:, 1:]
  logp = jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), targets[..., None], -1)[..., 0]
  weights = target_weights(batch)
  return (logp * weights).sum(axis=1), weights.sum(axis=1)


def continuation_logprobs(ctx: Run, examples: list[dict]) -> tuple[np.ndarray, np.ndarray]:
  """float64[N] summed log p(target tokens | prompt) and int[N] target counts of `examples`.

  All batches share one length (the longest example), so the scorer compiles once per call;
  padding rows repeat a real one and are dropped."""
  if not examples:
    return np.zeros(0), np.zeros(0, np.int64)
  length = max(len(ex["tokens"]) for ex in examples)
  logps, counts = [], []
  for chunk, n_real in batches_of(examples, ctx.rows_per_batch()):
    batch = one_per_row(chunk, ctx.layout, length=length)
    lp, n = _row_logprobs(ctx.model, ctx.params, ctx.to_global(batch))
    logps.append(ctx.to_host(lp)[:n_real])
    counts.append(ctx.to_host(n)[:n_real])
  return np.concatenate(logps).astype(np.float64), np.concatenate(counts).astype(np.int64)
