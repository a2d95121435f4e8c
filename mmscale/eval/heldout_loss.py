"""Teacher-forced loss and perplexity of the held-out records' target tokens."""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import numpy as np

from mmscale.data.transforms import builder_for
from mmscale.eval.context import EvalContext, batches_of
from mmscale.eval.eval_records import load_eval_records
from mmscale.eval.registry import register_evaluator
from mmscale.eval.settings import setting
from mmscale.models.loss import loss_sums


def pad_rows(examples: list[dict], seq_len: int, image_slots: int, num_image_tokens: int,
             image_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
  """One example per row, right-padded to `seq_len` (docs/contracts.md §4 batch)."""
  b = len(examples)
  out = {k: np.zeros((b, seq_len), np.int32)
         for k in ("tokens", "positions", "segment_ids", "mask_ar", "mask_loss")}
  out["images"] = np.zeros((b, image_slots, *image_shape), np.float32)
  out["image_positions"] = np.full((b, image_slots * num_image_tokens), seq_len, np.int32)
  for row, ex in enumerate(examples):
    n = min(len(ex["tokens"]), seq_len)
    for key in ("tokens", "mask_ar", "mask_loss"):
      out[key][row, :n] = ex[key][:n]
    out["positions"][row, :n] = np.arange(n)
    out["segment_ids"][row, :n] = 1
    images = np.asarray(ex["images"])[:image_slots]
    out["images"][row, :len(images)] = images
    positions = np.asarray(ex["image_positions"])[:image_slots * num_image_tokens]
    positions = np.where(positions < seq_len, positions, seq_len)
    out["image_positions"][row, :len(positions)] = positions
  return out


@functools.partial(jax.jit, static_argnames=("model",))
def _loss_sums(model: nn.Module, params, batch: dict) -> dict:
  return loss_sums(model.apply({"params": params}, batch), batch)


def loss_of_examples(ctx: EvalContext, examples: list[dict], max_batches: int = 0) -> dict:
  """Summed target NLL and target count over `examples` (one per row, `data.seq_len` columns):
  {"nll", "weight", "loss" (mean), "perplexity"}. Padding rows repeat a real one and count 0."""
  cfg = ctx.config
  rows = ctx.rows_per_batch()
  if max_batches:
    examples = examples[:max_batches * rows]
  size = cfg.model.vit.image_size
  nll = weight = 0.0
  for chunk, n_real in batches_of(examples, rows):
    batch = pad_rows(chunk, cfg.data.seq_len, cfg.data.max_images_per_seq,
                     cfg.model.connector.num_tokens, (size, size, 3))
    batch["mask_loss"][n_real:] = 0
    sums = jax.device_get(_loss_sums(ctx.model, ctx.params, ctx.to_global(batch)))
    nll += float(sums["nll"])
    weight += float(sums["weight"])
  loss = nll / max(weight, 1.0)
  return {"nll": nll, "weight": weight, "loss": loss, "perplexity": math.exp(min(loss, 50.0))}


@register_evaluator("heldout_loss")
def evaluate_heldout_loss(ctx: EvalContext) -> dict[str, float]:
  cfg = ctx.config
  builder = builder_for(cfg, ctx.tokenizer)
  examples = [builder(rec) for rec in load_eval_records(cfg)]
  sums = loss_of_examples(ctx, examples, int(setting(cfg, "loss_batches")))
  return {"heldout/loss": sums["loss"], "heldout/perplexity": sums["perplexity"],
          "heldout/targets": sums["weight"]}
