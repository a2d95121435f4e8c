"""Evaluators by name. Each is `fn(ctx: Run) -> dict[str, float]` (metric name -> value).

Evaluator modules register themselves on import; `EVALUATOR_MODULES` lists them so that a name
lookup imports them first (the registry module itself imports nothing heavy).
"""

from __future__ import annotations

import importlib
from typing import Callable

from mmscale.errors import ConfigError
from mmscale.registry import Registry

EVALUATORS: Registry[Callable] = Registry("evaluator")
EVALUATOR_MODULES = ("heldout_loss", "vqa", "caption", "pairs", "text", "fewshot", "choice")
DEFAULT_EVALS = ("heldout_loss", "vqa", "caption", "pairs", "text", "fewshot")
register_evaluator = EVALUATORS.register


def _load_all() -> None:
  for module in EVALUATOR_MODULES:
    importlib.import_module(f"mmscale.eval.{module}")


def get_evaluator(name: str) -> Callable:
  _load_all()
  return EVALUATORS.get(name)


def evaluator_names() -> list[str]:
  _load_all()
  return EVALUATORS.names()


def configured_evals(eval_config) -> tuple[str, ...]:
  """`eval.evals` when set, else DEFAULT_EVALS. A string or entries holding commas (what the
  flag `--config.eval.evals=vqa,pairs` gives) are split on commas."""
  names = eval_config.evals
  if isinstance(names, str):
    names = [names]
  return tuple(n.strip() for entry in names for n in entry.split(",") if n.strip()) or DEFAULT_EVALS


def validate_evals(eval_config, names=None) -> tuple[str, ...]:
  """Raises ConfigError naming `eval.evals` / `eval.every` for an unknown evaluator, so that a
  typo fails at start-up rather than at the first evaluation, hundreds of steps in."""
  names = tuple(names) if names else configured_evals(eval_config)
  known = evaluator_names()
  for field, given in (("eval.evals", names), ("eval.every", tuple(eval_config.every))):
    unknown = [n for n in given if n not in known]
    if unknown:
      raise ConfigError(field, f"unknown evaluators {unknown}; known: {known}")
  return names
