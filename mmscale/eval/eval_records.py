"""The held-out evaluation records of a world (or any record dir of `vqa` records)."""

from __future__ import annotations

import os

from mmscale.data import records


def eval_dir(config) -> str:
  return os.path.join(config.data.world_dir, "eval", "vqa")


def load_eval_records(config) -> list[dict]:
  """All eval records (up to `eval.max_examples` if > 0), in file order."""
  out = []
  for rec in records.iter_records(eval_dir(config)):
    out.append(rec)
    if config.eval.max_examples and len(out) >= config.eval.max_examples:
      break
  return out
