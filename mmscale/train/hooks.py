"""Hooks the train loop calls after steps: evaluation during training (more can plug in)."""

from __future__ import annotations

import logging

from mmscale.eval.registry import configured_evals
from mmscale.eval.runner import evaluate, format_table
from mmscale.runtime import Run


def due_evaluators(config, names: tuple[str, ...], step: int, default_every: int) -> list[str]:
  """Evaluators of `names` due at `step`: every `eval.every[name]` steps (a dict, else
  `default_every` = train.eval_every; 0 = never), and all with a nonzero interval at the last
  step (`train.steps`)."""
  every = dict(config.eval.every or {})
  last = step == config.train.steps
  due = []
  for name in names:
    interval = int(every.get(name, default_every) or 0)
    if interval and (last or step % interval == 0):
      due.append(name)
  return due


class EvalHook:
  """Runs the due evaluators (`due_evaluators`) after a step, on every process, and writes
  results to W/eval/ and the metric writers. `every` is the interval of evaluators without their
  own `eval.every` entry; `names` defaults to `eval.evals` (else the runner's defaults)."""

  def __init__(self, every: int, names=None):
    self.every = every
    self.names = tuple(names) if names is not None else None

  def __call__(self, ctx: Run, step: int) -> None:
    names = self.names if self.names is not None else configured_evals(ctx.config.eval)
    due = due_evaluators(ctx.config, names, step, self.every)
    if not due:
      return
    results, _ = evaluate(ctx, due, step)
    ctx.writer.write_scalars(step, {k: v for k, v in results.items() if "/count/" not in k})
    logging.info("eval at step %d (%s):\n%s", step, ",".join(due), format_table(results))
