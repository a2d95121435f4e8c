"""Which evaluators run at a training step: one interval for all, or one per evaluator."""

from __future__ import annotations

from mmscale.eval.settings import setting


def due_evaluators(config, names: tuple[str, ...], step: int, default_every: int) -> list[str]:
  """Evaluators of `names` due at `step`: every `eval.every[name]` steps (a dict, else
  `default_every` = train.eval_every; 0 = never), and all with a nonzero interval at the last
  step (`train.steps`)."""
  every = dict(setting(config, "every") or {})
  last = step == config.train.steps
  due = []
  for name in names:
    interval = int(every.get(name, default_every) or 0)
    if interval and (last or step % interval == 0):
      due.append(name)
  return due
