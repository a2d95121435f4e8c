"""Runs evaluators on params and writes `W/eval/results.json` (latest) + `W/eval/step_<N>.json`."""

from __future__ import annotations

import json
import logging
import time

import flax.linen as nn
import jax

from mmscale import paths, versions
from mmscale.eval import choice, contrastive
from mmscale.eval.registry import DEFAULT_EVALS, get_evaluator
from mmscale.runtime import Run


def run_evaluators(ctx: Run, names=DEFAULT_EVALS) -> dict[str, float]:
  """All `names` in order; every process runs them (collectives) and gets the same results."""
  results = {}
  with jax.set_mesh(ctx.mesh), nn.logical_axis_rules(ctx.rules):
    for name in names:
      start = time.time()
      results.update(get_evaluator(name)(ctx))
      logging.info("evaluator %s: %.1fs", name, time.time() - start)
  return results


def evaluate(ctx: Run, names, step: int) -> tuple[dict[str, float], str]:
  """Runs `names` on `ctx.params` and writes them under `ctx.workdir/eval` with the decoding
  settings used (whose TCCD centroids are checked before anything runs). Returns (results,
  path of results.json)."""
  decoding = contrastive.describe(ctx.config, ctx.workdir)
  results = run_evaluators(ctx, names)
  return results, write_results(ctx.workdir, step, results, decoding)


def write_results(workdir: str, step: int, results: dict, decoding: dict | None = None) -> str:
  """Writes on process 0 `step_<N>.json` (this run's results) and `results.json`: the latest
  value of every metric so far (evaluators on different schedules each leave their newest
  results), with `step` and `metric_steps` (metric -> step it was computed at). `decoding`
  (`contrastive.describe`: sampling and TCCD settings), when given, is stored as `decoding` in
  both files; in results.json it describes this write, as does `package_versions` (the key
  packages' versions, `mmscale/versions.py`). `workdir` may be local or `gs://...`. Returns the
  path of results.json."""
  directory = paths.join(workdir, "eval")
  path = paths.join(directory, "results.json")
  if jax.process_index() == 0:
    paths.makedirs(directory)
    latest = paths.read_json(path) if paths.exists(path) else {}
    metric_steps = {**latest.pop("metric_steps", {}), **{k: step for k in results}}
    latest.pop("step", None)
    latest.pop("decoding", None)
    latest.update(results)
    extra = {"package_versions": versions.package_versions()}
    if decoding is not None:
      extra["decoding"] = decoding
    latest.update(extra)
    step_results = {"step": step, **results, **extra}
    paths.write_text(paths.join(directory, f"step_{step}.json"),
                     json.dumps(step_results, indent=2, sort_keys=True) + "\n")
    paths.write_text(path, json.dumps({"step": step, **latest, "metric_steps": metric_steps},
                                      indent=2, sort_keys=True) + "\n")
  return path


def _vqa_lines(results: dict) -> list[str]:
  lines = []
  qtypes = sorted(k.split("/")[-1] for k in results if k.startswith("vqa/majority/"))
  if qtypes or "vqa/accuracy/all" in results:
    width = max([len("question type")] + [len(q) for q in qtypes])
    lines.append(f"{'question type':<{width}} {'n':>6} {'accuracy':>9} {'soft':>6} "
                 f"{'majority':>9} {'form maj.':>9}")
    for qtype in qtypes + ["all"]:
      if f"vqa/accuracy/{qtype}" not in results:
        continue
      baselines = [results.get(f"vqa/{b}/{qtype}") for b in ("majority", "form_majority")]
      lines.append(f"{qtype:<{width}} {int(results[f'vqa/count/{qtype}']):>6} "
                   f"{results[f'vqa/accuracy/{qtype}']:>9.3f} "
                   f"{results.get(f'vqa/soft_accuracy/{qtype}', float('nan')):>6.3f} "
                   + " ".join(f"{b:>9.3f}" if b is not None else f"{'-':>9}" for b in baselines))
  return lines


def _fewshot_lines(results: dict) -> list[str]:
  shots = sorted(int(k.split("/")[1][:-4]) for k in results
                 if k.startswith("fewshot/") and k.endswith("/accuracy/all"))
  if not shots:
    return []
  return ["few-shot accuracy: " + ", ".join(
      f"{s}-shot {results[f'fewshot/{s}shot/accuracy/all']:.3f}" for s in shots)]


def _format_free_lines(results: dict) -> list[str]:
  table = choice.format_table(results)
  return ["format-free (likelihood) accuracy:", table] if table else []


def _headline_lines(*keys_labels):
  def lines(results: dict) -> list[str]:
    return [f"{label}: {results[key]:.3f}" for key, label in keys_labels if key in results]
  return lines


# evaluator -> its lines of the table, in print order
_TABLE_PARTS = {
    "vqa": _vqa_lines,
    "ranked": _format_free_lines,
    "fewshot": _fewshot_lines,
    "pairs": _headline_lines(("pairs/accuracy/all", "multi-image accuracy")),
    "caption": _headline_lines(("caption/cider_d", "caption CIDEr-D"),
                               ("caption/bleu4", "caption BLEU-4")),
    "text": _headline_lines(("text/perplexity", "text perplexity"),
                            ("text/fact_accuracy/all", "text-only fact accuracy")),
    "heldout_loss": _headline_lines(("heldout/perplexity", "held-out VQA perplexity")),
}


def format_table(results: dict, taught: set[str] | None = None) -> str:
  """Per-type accuracy (exact / soft) vs the majority and form-majority baselines
  (mmscale/eval/vqa.py), then the other evaluators' headlines.

  taught: the evaluators the training mixture teaches (`mmscale.eval.taught`). When given, their
  figures come first and the rest follow under a heading saying the mixture did not teach them
  (a caption+VQA model's text perplexity or 8-shot accuracy is not a verdict on its data)."""
  if taught is None:
    return "\n".join(line for part in _TABLE_PARTS.values() for line in part(results))
  first = [line for name, part in _TABLE_PARTS.items() if name in taught
           for line in part(results)]
  rest = {name: part(results) for name, part in _TABLE_PARTS.items() if name not in taught}
  rest = {name: lines for name, lines in rest.items() if lines}
  lines = [f"trained for: {', '.join(n for n in _TABLE_PARTS if n in taught) or 'none'}"] + first
  if rest:
    lines += ["", f"not taught by this mixture (no such data in training; expect chance-level "
                  f"figures): {', '.join(rest)}"]
    lines += [line for part in rest.values() for line in part]
  return "\n".join(lines)
