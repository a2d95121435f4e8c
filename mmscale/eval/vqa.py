"""VQA by decoding with the KV cache: exact match and VQAv2 soft accuracy, per question type.

Beside each accuracy we report the majority-answer baseline of the same questions (the accuracy
of always answering the most frequent answer of that type), so "learned" is visible at a glance.
Two sources share the scoring: the world's held-out `eval/vqa` (`vqa`) and a local VQA JSON file
(`vqa_file`, `eval.vqa_json`).
"""

from __future__ import annotations

import collections

from mmscale.eval import records as eval_records
from mmscale.eval.answers import normalize_answer, soft_accuracy
from mmscale.runtime import Run
from mmscale.eval.records import load_eval_records
from mmscale.eval.predict import generate_for_usable_records
from mmscale.eval.registry import register_evaluator


def majority_baseline(answers: list[str]) -> float:
  counts = collections.Counter(answers)
  return counts.most_common(1)[0][1] / len(answers) if answers else 0.0


def subgroups(meta: dict) -> list[str]:
  """Finer groups of a knowledge-world question, beside its qtype: a knowledge question is
  `knowledge_taught` when the training VQA arm asks about its shape's facts (the answer format
  and those facts are taught) or `knowledge_heldout` when only captions and fact documents state
  them (what knowledge density can add), and `knowledge_grounded` (the shape must be seen: 'the
  red object') or `knowledge_ungrounded` ('the cross', memory alone)."""
  if meta.get("qtype") != "knowledge":
    return []
  out = []
  if "taught" in meta:
    out.append("knowledge_taught" if meta["taught"] else "knowledge_heldout")
  form = str(meta.get("qform", ""))
  if form.startswith(("grounded", "ungrounded")):
    out.append("knowledge_" + form.split("_")[0])
  return out


def form_majority_hits(forms: list[str], answers: list[str]) -> list[bool]:
  """Whether each question's answer is the most common answer of its question form (template):
  the 'knows the format and the answer priors, sees nothing' baseline. It is stronger than the
  per-type majority where one type mixes templates with different answer sets (a knowledge type
  asks family, habitat and weight; guessing each template's usual value beats one global guess)."""
  by_form = collections.defaultdict(collections.Counter)
  for form, answer in zip(forms, answers):
    by_form[form][answer] += 1
  top = {form: counts.most_common(1)[0][0] for form, counts in by_form.items()}
  return [answer == top[form] for form, answer in zip(forms, answers)]


def summarize(qtypes: list[str], answers: list[list[str]], predictions: list[str],
              prefix: str = "vqa", extra_groups: list[list[str]] | None = None,
              forms: list[str] | None = None) -> dict[str, float]:
  """Exact match (vs the first answer), soft accuracy and majority baseline, overall, per qtype
  and per extra group (`extra_groups[i]`: the groups question i also counts in, e.g.
  `subgroups`); with `forms` (question templates) also `form_majority` (`form_majority_hits`).
  `answers` and `predictions` are normalised and aligned with `qtypes`."""
  out = {}
  groups = collections.defaultdict(list)
  extra_groups = extra_groups or [[] for _ in qtypes]
  hits = form_majority_hits([f"{q}/{f}" for q, f in zip(qtypes, forms)],
                            [refs[0] for refs in answers]) if forms else [None] * len(qtypes)
  for qtype, refs, pred, extra, hit in zip(qtypes, answers, predictions, extra_groups, hits):
    for group in (qtype, "all", *extra):
      groups[group].append((refs, pred, hit))
  for qtype, items in sorted(groups.items()):
    n = len(items)
    out[f"{prefix}/accuracy/{qtype}"] = sum(refs[0] == p for refs, p, _ in items) / n
    out[f"{prefix}/soft_accuracy/{qtype}"] = sum(
        soft_accuracy(p, refs) for refs, p, _ in items) / n
    if qtype != "all":
      out[f"{prefix}/majority/{qtype}"] = majority_baseline([refs[0] for refs, _, _ in items])
    if forms:
      out[f"{prefix}/form_majority/{qtype}"] = sum(hit for _, _, hit in items) / n
    out[f"{prefix}/count/{qtype}"] = n
  return out


def score_vqa_records(ctx: Run, recs: list[dict], prefix: str) -> dict[str, float]:
  """Decodes an answer for every VQA record and scores it (`summarize`)."""
  recs, texts, skipped = generate_for_usable_records(
      ctx, recs, max_new_tokens=int(ctx.config.eval.max_decode_len))
  predictions = [normalize_answer(t) for t in texts]
  answers = [[normalize_answer(a) for a in rec["meta"].get("answers") or [rec["meta"]["answer"]]]
             for rec in recs]
  qtypes = [str(rec["meta"].get("qtype") or "all") for rec in recs]
  extra = [subgroups(rec["meta"]) for rec in recs]
  forms = [str(rec["meta"].get("qform", "")) for rec in recs]
  return {**summarize(qtypes, answers, predictions, prefix, extra, forms),
          f"{prefix}/count/skipped": skipped}


@register_evaluator("vqa")
def evaluate_vqa(ctx: Run) -> dict[str, float]:
  """The world's held-out questions (types attribute / count / relation / knowledge)."""
  return score_vqa_records(ctx, load_eval_records(ctx.config), "vqa")


@register_evaluator("vqa_file")
def evaluate_vqa_file(ctx: Run) -> dict[str, float]:
  """A local VQA JSON file (`eval.vqa_json`, images under `eval.image_root`)."""
  recs = eval_records.records_from_setting(ctx.config, "vqa_json", eval_records.load_vqa_json)
  return score_vqa_records(ctx, recs, "vqa_file")
