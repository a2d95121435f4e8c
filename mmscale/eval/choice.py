"""Format-free evaluation: ranked choice and the statement probe, scored by likelihood.

Generation accuracy asks a model to produce the answer in the evaluation's format; a model that
knows the fact but not the format scores zero. These evaluators ask only which candidate the model
finds most likely (lm-eval-harness's multiple-choice scoring):

- *ranked choice* (`ranked`, `ranked_file`): every candidate answer of the question's answer set
  (the world template's `choices`, or a multiple-choice file's) is scored as the continuation of
  [image, question]; the question counts as right when the true answer scores strictly highest.
  Two scores, as lm-eval-harness reports them: `accuracy` ranks the summed log-likelihood of the
  answer's tokens (and the EOS that closes it, as training supervises it, so "left" is not
  favoured over "left of" for being a prefix), `accuracy_norm` ranks it divided by the answer's
  length in characters (lm-eval's `acc_norm`), which removes the bias towards short answers.
- *statement probe* (`statement`, `statement_file`): the true caption-form statement ("the red
  circle is left of the blue square .") against its false counterparts (the other predicates,
  colours, numbers or fact values) as the continuation of the image alone, i.e. in caption
  format: a model that learned a fact from captions can show it without any question format.

Ties count as wrong (a constant model scores 0, not 1/n). Each group (question type, `all`, the
knowledge sub-groups of `vqa.subgroups`) reports, beside the accuracies, its floors: `chance`
(the mean of 1 / number of candidates), `majority` (always the type's most common true value)
and `form_majority` (each template's most common true value: knows the priors, sees nothing).
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np

from mmscale.data.transforms import builder_for
from mmscale.errors import DataError
from mmscale.eval import records as eval_records
from mmscale.eval.likelihood import continuation_logprobs
from mmscale.eval.records import eval_dir, load_eval_records
from mmscale.eval.registry import register_evaluator
from mmscale.eval.vqa import form_majority_hits, majority_baseline, subgroups
from mmscale.runtime import Run


@dataclasses.dataclass
class ChoiceItem:
  """One question: `prompt` segments (image, question) continued by each of `candidates`.

  `values[i]` is the word candidate i varies in (the answer, or the statement's slot), used for
  the constant-answer floors; `answer` indexes the true candidate."""
  record: dict
  prompt: list
  candidates: list
  values: list
  answer: int
  qtype: str
  form: str
  groups: list


def _require(rec: dict, key: str, source: str, hint: str):
  value = rec.get("meta", {}).get(key)
  if not value:
    raise DataError(f"{source}: record '{rec.get('id')}' has no meta field '{key}' ({hint})")
  return value


def _item(rec: dict, prompt: list, candidates: list, values: list, true_value: str,
          source: str) -> ChoiceItem:
  if true_value not in values:
    raise DataError(f"{source}: record '{rec.get('id')}': the answer {true_value!r} is not one "
                    f"of its candidates {values}")
  meta = rec.get("meta", {})
  return ChoiceItem(rec, prompt, list(candidates), list(values), values.index(true_value),
                    str(meta.get("qtype") or "all"), str(meta.get("qform", "")), subgroups(meta))


def ranked_items(recs: list[dict], source: str) -> list[ChoiceItem]:
  """The question's answer set as candidates after [image, question] (`meta.choices`)."""
  out = []
  for rec in recs:
    choices = [str(c) for c in _require(rec, "choices", source, "the candidate answers")]
    prompt = [s for s in rec["segments"] if "image" in s or not s.get("loss")]
    out.append(_item(rec, prompt, choices, choices, str(rec["meta"]["answer"]), source))
  return out


def statement_items(recs: list[dict], source: str) -> list[ChoiceItem]:
  """The caption-form statements (`meta.statements`, slot words `meta.statement_values`, the
  true one's `meta.statement_answer`) after the record's images alone."""
  out = []
  hint = "a world built before the statement probe: rebuild it with tools/build_world.py"
  for rec in recs:
    statements = _require(rec, "statements", source, hint)
    values = [str(v) for v in _require(rec, "statement_values", source, hint)]
    if len(values) != len(statements):
      raise DataError(f"{source}: record '{rec.get('id')}' has {len(statements)} statements "
                      f"but {len(values)} statement_values")
    prompt = [s for s in rec["segments"] if "image" in s]
    out.append(_item(rec, prompt, statements, values, str(rec["meta"]["statement_answer"]),
                     source))
  return out


def score_items(ctx: Run, items: list[ChoiceItem]) -> list[tuple[np.ndarray, np.ndarray]]:
  """Per item (float64[n] summed log-likelihood, float64[n] per-character log-likelihood) of
  its candidates, all candidates of all items scored in one pass of fixed-shape batches."""
  builder = builder_for(ctx.config.data, ctx.layout, ctx.tokenizer)
  examples = [builder({**item.record, "segments": item.prompt + [{"text": c, "loss": True}]})
              for item in items for c in item.candidates]
  logps, _ = continuation_logprobs(ctx, examples)
  out, start = [], 0
  for item in items:
    lp = logps[start:start + len(item.candidates)]
    chars = np.array([max(len(c), 1) for c in item.candidates], np.float64)
    out.append((lp, lp / chars))
    start += len(item.candidates)
  return out


def strictly_best(scores: np.ndarray, answer: int) -> bool:
  """Whether candidate `answer` scores above every other one (a tie is a miss)."""
  others = np.delete(scores, answer)
  return bool(others.size == 0 or scores[answer] > others.max())


def summarize(items: list[ChoiceItem], scores: list, prefix: str) -> dict[str, float]:
  """`{prefix}/{accuracy,accuracy_norm,chance,majority,form_majority,count}/<group>` for each
  question type, `all` and each item's extra groups (`majority` not for `all`)."""
  truths = [item.values[item.answer] for item in items]
  form_hits = form_majority_hits([f"{it.qtype}/{it.form}" for it in items], truths)
  groups = collections.defaultdict(list)
  for i, item in enumerate(items):
    for group in (item.qtype, "all", *item.groups):
      groups[group].append(i)
  out = {}
  for group, idx in sorted(groups.items()):
    n = len(idx)
    out[f"{prefix}/accuracy/{group}"] = sum(
        strictly_best(scores[i][0], items[i].answer) for i in idx) / n
    out[f"{prefix}/accuracy_norm/{group}"] = sum(
        strictly_best(scores[i][1], items[i].answer) for i in idx) / n
    out[f"{prefix}/chance/{group}"] = sum(1.0 / len(items[i].candidates) for i in idx) / n
    if group != "all":
      out[f"{prefix}/majority/{group}"] = majority_baseline([truths[i] for i in idx])
    out[f"{prefix}/form_majority/{group}"] = sum(form_hits[i] for i in idx) / n
    out[f"{prefix}/count/{group}"] = n
  return out


def evaluate_items(ctx: Run, items: list[ChoiceItem], prefix: str) -> dict[str, float]:
  return summarize(items, score_items(ctx, items), prefix)


def _file_records(ctx: Run) -> tuple[list[dict], str]:
  recs = eval_records.records_from_setting(ctx.config, "mc_json", eval_records.load_mc_json)
  return recs, ctx.config.eval.mc_json


@register_evaluator("ranked")
def evaluate_ranked(ctx: Run) -> dict[str, float]:
  """The world's held-out questions, each template's answer set ranked by likelihood."""
  items = ranked_items(load_eval_records(ctx.config), eval_dir(ctx.config))
  return evaluate_items(ctx, items, "ranked")


@register_evaluator("statement")
def evaluate_statement(ctx: Run) -> dict[str, float]:
  """The world's held-out questions as caption-form statements, true vs false."""
  items = statement_items(load_eval_records(ctx.config), eval_dir(ctx.config))
  return evaluate_items(ctx, items, "statement")


@register_evaluator("ranked_file")
def evaluate_ranked_file(ctx: Run) -> dict[str, float]:
  """A local multiple-choice file (`eval.mc_json`, docs/evaluation.md)."""
  recs, path = _file_records(ctx)
  return evaluate_items(ctx, ranked_items(recs, path), "ranked_file")


@register_evaluator("statement_file")
def evaluate_statement_file(ctx: Run) -> dict[str, float]:
  """The `statements` of a local multiple-choice file (`eval.mc_json`), one per choice."""
  recs, path = _file_records(ctx)
  if not any(rec["meta"].get("statements") for rec in recs):
    raise DataError(f"{path}: no entry has 'statements' (one caption-form statement per choice), "
                    "which the statement_file evaluator scores")
  return evaluate_items(ctx, statement_items(recs, path), "statement_file")


def format_table(results: dict) -> str:
  """Generation vs format-free accuracy per group, with the floors, for the world evaluators
  present in `results` (empty when none of ranked / statement ran)."""
  sources = [p for p in ("ranked", "statement") if f"{p}/accuracy/all" in results]
  if not sources:
    return ""
  groups = sorted({k.split("/")[-1] for p in sources for k in results
                   if k.startswith(f"{p}/accuracy/")} - {"all"}) + ["all"]
  width = max(len("group"), *(len(g) for g in groups))
  cols = [("generate", "vqa/accuracy")] + [
      (name, f"{p}/{m}") for p in sources
      for name, m in ((p, "accuracy"), (p + " norm", "accuracy_norm"),
                      (p + " chance", "chance"), (p + " form maj.", "form_majority"))]
  lines = [f"{'group':<{width}} " + " ".join(f"{name:>{max(9, len(name))}}" for name, _ in cols)]
  for group in groups:
    cells = []
    for name, key in cols:
      value = results.get(f"{key}/{group}")
      w = max(9, len(name))
      cells.append(f"{value:>{w}.3f}" if value is not None else f"{'-':>{w}}")
    lines.append(f"{group:<{width}} " + " ".join(cells))
  return "\n".join(lines)
