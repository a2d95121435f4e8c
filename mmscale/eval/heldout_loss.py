"""Teacher-forced loss and perplexity of the held-out records' target tokens."""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax

from mmscale.data.transforms import builder_for
from mmscale.data.batch import batches_of, one_per_row
from mmscale.runtime import Run
from mmscale.eval.records import load_eval_records
from mmscale.eval.registry import register_evaluator
from mmscale.models.loss import loss_sums


@functools.partial(jax.jit, static_argnames=("model",))
def eval_loss_sums(model: nn.Module, params, batch: dict) -> dict:
  """The evaluation forward: {"nll", "weight"} float32[] sums over the batch's target tokens
  (what held-out loss runs per batch, and what `python -m mmscale.compile --step=eval`
  compiles for a TPU slice)."""
  return loss_sums(model.apply({"params": params}, batch), batch)


def loss_of_examples(ctx: Run, examples: list[dict], max_batches: int = 0) -> dict:
  """Summed target NLL and target count over `examples` (one per row, cut at the layout's T):
  {"nll", "weight", "loss" (mean), "perplexity"}. Padding rows repeat a real one and count 0."""
  rows = ctx.rows_per_batch()
  if max_batches:
    examples = examples[:max_batches * rows]
  nll = weight = 0.0
  for chunk, n_real in batches_of(examples, rows):
    batch = one_per_row(chunk, ctx.layout, truncate=True)
    batch["mask_loss"][n_real:] = 0
    sums = jax.device_get(eval_loss_sums(ctx.model, ctx.params, ctx.to_global(batch)))
    nll += float(sums["nll"])
    weight += float(sums["weight"])
  loss = nll / max(weight, 1.0)
  return {"nll": nll, "weight": weight, "loss": loss, "perplexity": math.exp(min(loss, 50.0))}


@register_evaluator("heldout_loss")
def evaluate_heldout_loss(ctx: Run) -> dict[str, float]:
  cfg = ctx.config
  builder = builder_for(cfg.data, ctx.layout, ctx.tokenizer)
  examples = [builder(rec) for rec in load_eval_records(cfg)]
  sums = loss_of_examples(ctx, examples, int(cfg.eval.loss_batches))
  return {"heldout/loss": sums["loss"], "heldout/perplexity": sums["perplexity"],
          "heldout/targets": sums["weight"]}
