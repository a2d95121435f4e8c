"""Evaluators by name. Each is `fn(ctx: EvalContext) -> dict[str, float]` (metric name -> value).

Evaluator modules register themselves on import; `EVALUATOR_MODULES` lists them so that a name
lookup imports them first (the registry module itself imports nothing heavy).
"""

from __future__ import annotations

import importlib
from typing import Callable

_EVALUATORS: dict[str, Callable] = {}
EVALUATOR_MODULES = ("heldout_loss", "vqa", "caption", "pairs", "text", "fewshot")


def register_evaluator(name: str):
  def wrap(fn):
    _EVALUATORS[name] = fn
    return fn
  return wrap


def _load_all() -> None:
  for module in EVALUATOR_MODULES:
    importlib.import_module(f"mmscale.eval.{module}")


def get_evaluator(name: str) -> Callable:
  _load_all()
  if name not in _EVALUATORS:
    raise ValueError(f"unknown evaluator '{name}'; known: {sorted(_EVALUATORS)}")
  return _EVALUATORS[name]


def evaluator_names() -> list[str]:
  _load_all()
  return sorted(_EVALUATORS)
