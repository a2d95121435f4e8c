"""Hooks the train loop calls after steps: evaluation during training (more can plug in)."""

from __future__ import annotations

import logging

from mmscale.eval.context import EvalContext
from mmscale.eval.runner import DEFAULT_EVALS, format_table, run_evaluators, write_results


class EvalHook:
  """Runs the evaluators every `every` steps and at the last step, writing results + scalars."""

  def __init__(self, every: int, names=DEFAULT_EVALS):
    self.every = every
    self.names = tuple(names)

  def __call__(self, ctx, step: int) -> None:
    if not self.every or (step % self.every and step != ctx.config.train.steps):
      return
    eval_ctx = EvalContext(config=ctx.config, model=ctx.model, params=ctx.state.params,
                           tokenizer=ctx.tokenizer, mesh=ctx.mesh, rules=ctx.rules)
    results = run_evaluators(eval_ctx, self.names)
    write_results(ctx.workdir, step, results)
    ctx.writer.write_scalars(step, {k: v for k, v in results.items() if "/count/" not in k})
    logging.info("eval at step %d:\n%s", step, format_table(results))
