"""Hooks the train loop calls after steps: evaluation during training (more can plug in)."""

from __future__ import annotations

import logging

from mmscale.eval import contrastive
from mmscale.eval.context import EvalContext
from mmscale.eval.runner import configured_evals, format_table, run_evaluators, write_results
from mmscale.eval.schedule import due_evaluators


class EvalHook:
  """Runs the due evaluators (`mmscale.eval.schedule`) after a step, on every process, and writes
  results to W/eval/ and the metric writers. `every` is the interval of evaluators without their
  own `eval.every` entry; `names` defaults to `eval.evals` (else the runner's defaults)."""

  def __init__(self, every: int, names=None):
    self.every = every
    self.names = tuple(names) if names is not None else None

  def __call__(self, ctx, step: int) -> None:
    names = self.names if self.names is not None else configured_evals(ctx.config)
    due = due_evaluators(ctx.config, names, step, self.every)
    if not due:
      return
    eval_ctx = EvalContext(config=ctx.config, model=ctx.model, params=ctx.state.params,
                           tokenizer=ctx.tokenizer, mesh=ctx.mesh, rules=ctx.rules,
                           workdir=ctx.workdir)
    results = run_evaluators(eval_ctx, due)
    write_results(ctx.workdir, step, results,
                  decoding=contrastive.describe(ctx.config, ctx.workdir))
    ctx.writer.write_scalars(step, {k: v for k, v in results.items() if "/count/" not in k})
    logging.info("eval at step %d (%s):\n%s", step, ",".join(due), format_table(results))
