"""Evaluators by name. Each is `fn(ctx: EvalContext) -> dict[str, float]` (metric name -> value)."""

from __future__ import annotations

from typing import Callable

_EVALUATORS: dict[str, Callable] = {}


def register_evaluator(name: str):
  def wrap(fn):
    _EVALUATORS[name] = fn
    return fn
  return wrap


def get_evaluator(name: str) -> Callable:
  from mmscale.eval import heldout_loss, vqa  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  if name not in _EVALUATORS:
    raise ValueError(f"unknown evaluator '{name}'; known: {sorted(_EVALUATORS)}")
  return _EVALUATORS[name]


def evaluator_names() -> list[str]:
  from mmscale.eval import heldout_loss, vqa  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  return sorted(_EVALUATORS)
