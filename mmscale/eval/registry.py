"""Evaluators by name. Each is `fn(ctx: EvalContext) -> dict[str, float]` (metric name -> value).

Evaluator modules register themselves on import; `EVALUATOR_MODULES` lists them so that a name
lookup imports them first (the registry module itself imports nothing heavy).
"""

from __future__ import annotations

import importlib
from typing import Callable

from mmscale.registry import Registry

EVALUATORS: Registry[Callable] = Registry("evaluator")
EVALUATOR_MODULES = ("heldout_loss", "vqa", "caption", "pairs", "text", "fewshot")
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
