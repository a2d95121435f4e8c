"""Runs evaluators on params and writes `W/eval/results.json` (latest) + `W/eval/step_<N>.json`."""

from __future__ import annotations

import json
import os

import flax.linen as nn
import jax

from mmscale.eval.context import EvalContext
from mmscale.eval.registry import get_evaluator

DEFAULT_EVALS = ("heldout_loss", "vqa")


def run_evaluators(ctx: EvalContext, names=DEFAULT_EVALS) -> dict[str, float]:
  results = {}
  with jax.set_mesh(ctx.mesh), nn.logical_axis_rules(ctx.rules):
    for name in names:
      results.update(get_evaluator(name)(ctx))
  return results


def write_results(workdir: str, step: int, results: dict) -> str:
  """Writes results on process 0; returns the path of results.json."""
  directory = os.path.join(workdir, "eval")
  path = os.path.join(directory, "results.json")
  if jax.process_index() == 0:
    os.makedirs(directory, exist_ok=True)
    payload = json.dumps({"step": step, **results}, indent=2, sort_keys=True)
    for name in ("results.json", f"step_{step}.json"):
      with open(os.path.join(directory, name), "w") as f:
        f.write(payload + "\n")
  return path


def format_table(results: dict) -> str:
  """The per-type accuracy vs majority-baseline table printed after the main job."""
  qtypes = sorted(k.split("/")[-1] for k in results if k.startswith("vqa/majority/"))
  lines = [f"{'question type':<14} {'n':>6} {'accuracy':>9} {'majority':>9}"]
  for qtype in qtypes:
    lines.append(f"{qtype:<14} {int(results[f'vqa/count/{qtype}']):>6} "
                 f"{results[f'vqa/accuracy/{qtype}']:>9.3f} {results[f'vqa/majority/{qtype}']:>9.3f}")
  if "vqa/accuracy/all" in results:
    lines.append(f"{'all':<14} {int(results['vqa/count/all']):>6} {results['vqa/accuracy/all']:>9.3f}")
  if "heldout/loss" in results:
    lines.append(f"held-out loss {results['heldout/loss']:.3f}, "
                 f"perplexity {results['heldout/perplexity']:.2f}")
  return "\n".join(lines)
