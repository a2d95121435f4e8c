"""Captioning: decode a caption per image, score CIDEr-D and BLEU-4 against its references.

Sources: the world's held-out `eval/caption` (`caption`; one short reference per image, so
scores are lower than on 5-reference COCO) and a COCO-style caption file (`caption_file`,
`eval.caption_json`).
"""

from __future__ import annotations

from mmscale.eval import caption_metrics
from mmscale.eval import records as eval_records
from mmscale.runtime import Run
from mmscale.eval.records import load_eval_records
from mmscale.eval.predict import generate_for_usable_records
from mmscale.eval.registry import register_evaluator


def references_of(rec: dict) -> list[str]:
  """meta.references if present, else the record's text segments with loss (its caption)."""
  refs = (rec.get("meta") or {}).get("references")
  if refs:
    return [str(r) for r in refs]
  return [" ".join(s["text"] for s in rec["segments"] if "text" in s and s.get("loss"))]


def score_caption_records(ctx: Run, recs: list[dict], prefix: str) -> dict[str, float]:
  recs, texts, skipped = generate_for_usable_records(
      ctx, recs, max_new_tokens=int(ctx.config.eval.caption_max_len))
  refs = [references_of(rec) for rec in recs]
  cider, _ = caption_metrics.cider_d(texts, refs)
  return {f"{prefix}/cider_d": cider, f"{prefix}/bleu4": caption_metrics.bleu(texts, refs),
          f"{prefix}/count/all": len(recs), f"{prefix}/count/skipped": skipped}


@register_evaluator("caption")
def evaluate_caption(ctx: Run) -> dict[str, float]:
  return score_caption_records(ctx, load_eval_records(ctx.config, "caption"), "caption")


@register_evaluator("caption_file")
def evaluate_caption_file(ctx: Run) -> dict[str, float]:
  recs = eval_records.records_from_setting(ctx.config, "caption_json",
                                          eval_records.load_coco_captions)
  return score_caption_records(ctx, recs, "caption_file")
