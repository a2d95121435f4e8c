"""Exact-match VQA by greedy decoding with the KV cache, overall and per question type.

Beside each accuracy we report the majority-answer baseline of the same questions (the accuracy
of always answering the most frequent answer of that type), so "learned" is visible at a glance.
"""

from __future__ import annotations

import collections

from mmscale.data.transforms import ExampleBuilder
from mmscale.eval import generate
from mmscale.eval.context import EvalContext, batches_of
from mmscale.eval.eval_records import load_eval_records
from mmscale.eval.registry import register_evaluator


def normalize_answer(text: str) -> str:
  """Lowercase, single-spaced, without surrounding punctuation (VQA-style normalisation)."""
  return " ".join(text.lower().strip().strip(".?!,").split())


def majority_baseline(answers: list[str]) -> float:
  counts = collections.Counter(answers)
  return counts.most_common(1)[0][1] / len(answers) if answers else 0.0


def summarize(qtypes: list[str], answers: list[str], predictions: list[str]) -> dict[str, float]:
  """Accuracy and majority baseline overall and per qtype, from aligned lists."""
  out = {}
  groups = collections.defaultdict(list)
  for qtype, answer, pred in zip(qtypes, answers, predictions):
    groups[qtype].append((answer, pred))
    groups["all"].append((answer, pred))
  for qtype, pairs in sorted(groups.items()):
    out[f"vqa/accuracy/{qtype}"] = sum(a == p for a, p in pairs) / len(pairs)
    if qtype != "all":
      out[f"vqa/majority/{qtype}"] = majority_baseline([a for a, _ in pairs])
    out[f"vqa/count/{qtype}"] = len(pairs)
  return out


def predict(ctx: EvalContext, prompts: list[dict]) -> list[str]:
  """Greedy answers (decoded text) for prompt examples, batched and sharded like training."""
  cfg, tok = ctx.config, ctx.tokenizer
  length = max(len(p["tokens"]) for p in prompts)
  size = cfg.model.vit.image_size
  texts = []
  for chunk, n_real in batches_of(prompts, ctx.rows_per_batch()):
    batch = generate.left_pad(chunk, length, cfg.data.max_images_per_seq,
                              cfg.model.connector.num_tokens, (size, size, 3))
    out = generate.greedy_generate(ctx.model, ctx.params, ctx.to_global(batch),
                                   max_new_tokens=cfg.eval.max_decode_len)
    ids = generate.cut_at_stop(ctx.to_host(out)[:n_real], (tok.eos_id, tok.pad_id))
    texts += [tok.decode(row) for row in ids]
  return texts


@register_evaluator("vqa")
def evaluate_vqa(ctx: EvalContext) -> dict[str, float]:
  recs = load_eval_records(ctx.config)
  builder = ExampleBuilder(ctx.tokenizer, image_size=ctx.config.model.vit.image_size,
                           num_image_tokens=ctx.config.model.connector.num_tokens)
  prompts = [builder(rec, prompt_only=True) for rec in recs]
  predictions = [normalize_answer(p) for p in predict(ctx, prompts)]
  answers = [normalize_answer(str(rec["meta"]["answer"])) for rec in recs]
  qtypes = [str(rec["meta"].get("qtype", "all")) for rec in recs]
  return summarize(qtypes, answers, predictions)
