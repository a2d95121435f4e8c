"""Batched text generation for evaluators: prompts -> decoded strings, sharded like training."""

from __future__ import annotations

import dataclasses
import logging

import jax

from mmscale.data.transforms import SkipExample, builder_for
from mmscale.errors import DataError
from mmscale.eval import contrastive, generate
from mmscale.data.batch import batches_of, one_per_row
from mmscale.runtime import Run


def generate_ids(ctx: Run, prompts: list[dict], *, max_new_tokens: int) -> list[list[int]]:
  """Generated token ids per prompt, cut before EOS / padding.

  prompts: unpacked prompt examples (`ExampleBuilder(..., prompt_only=True)` output or the
  few-shot concatenation). All batches share one prompt length and image-slot count (the
  maxima over `prompts`), so an evaluator compiles its decode once. Sampling follows
  `eval.temperature` / `eval.top_p` / `eval.seed` (greedy by default); the key of a batch is
  folded with its index, so results do not depend on the mesh. `eval.tccd_alpha` != 0 decodes
  with text-centroid contrastive decoding (`contrastive.decoding`).
  """
  if not prompts:
    return []
  cfg, tok = ctx.config, ctx.tokenizer
  length = max(len(p["tokens"]) for p in prompts)
  slots = max(1, max(len(p["images"]) for p in prompts))
  layout = dataclasses.replace(ctx.layout, max_images=slots)
  rng = jax.random.key(int(cfg.eval.seed))
  decoding = contrastive.decoding(ctx)  # model + params, or TCCD's two passes
  out = []
  for index, (chunk, n_real) in enumerate(batches_of(prompts, ctx.rows_per_batch())):
    batch = one_per_row(chunk, layout, length=length, pad="left")
    tokens = generate.generate(
        prompt=ctx.to_global(batch), max_new_tokens=max_new_tokens,
        temperature=float(cfg.eval.temperature), top_p=float(cfg.eval.top_p),
        stop_ids=(tok.eos_id,), pad_id=tok.pad_id, valid_vocab=tok.vocab_size,
        rng=jax.random.fold_in(rng, index), **decoding)
    out += generate.cut_at_stop(ctx.to_host(tokens)[:n_real], (tok.eos_id, tok.pad_id))
  return out


def generate_texts(ctx: Run, prompts: list[dict], *, max_new_tokens: int) -> list[str]:
  """Decoded continuations of `prompts` (see `generate_ids`)."""
  return [ctx.tokenizer.decode(ids)
          for ids in generate_ids(ctx, prompts, max_new_tokens=max_new_tokens)]


def generate_for_records(ctx: Run, recs: list[dict], *, max_new_tokens: int) -> list[str]:
  """Decoded continuations of records (world / record-format dicts): each becomes its prompt
  (`builder_for(...)(rec, prompt_only=True)`: the text segments without loss) and is decoded."""
  builder = builder_for(ctx.config.data, ctx.layout, ctx.tokenizer)
  return generate_texts(ctx, [builder(rec, prompt_only=True) for rec in recs],
                        max_new_tokens=max_new_tokens)


def generate_for_usable_records(ctx: Run, recs: list[dict], *,
                                max_new_tokens: int) -> tuple[list[dict], list[str], int]:
  """`generate_for_records` over the records that can become a prompt: one whose image cannot be
  decoded (or is too large, ...) is left out with a warning naming it, as training skips it, and
  counted. Returns (kept records, their texts, number skipped)."""
  builder = builder_for(ctx.config.data, ctx.layout, ctx.tokenizer)
  kept, prompts = [], []
  for rec in recs:
    try:
      prompts.append(builder(rec, prompt_only=True))
    except SkipExample as e:
      logging.warning("evaluation: skipping record %s: %s", rec.get("id", "?"), e)
      continue
    kept.append(rec)
  if recs and not kept:
    raise DataError(f"evaluation: none of the {len(recs)} records can be read (each was skipped; "
                    "the warnings above name them)")
  return kept, generate_texts(ctx, prompts, max_new_tokens=max_new_tokens), len(recs) - len(kept)
