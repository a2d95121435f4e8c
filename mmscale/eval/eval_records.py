"""The held-out evaluation records of a world: `eval/vqa` questions and `eval/caption` captions."""

from __future__ import annotations

import os

from mmscale.data import records


def eval_dir(config, split: str = "vqa") -> str:
  return os.path.join(config.data.world_dir, "eval", split)


def read_records(directory: str, limit: int = 0) -> list[dict]:
  """Records of a record directory in file order (the first `limit` if > 0)."""
  out = []
  for rec in records.iter_records(directory):
    out.append(rec)
    if limit and len(out) >= limit:
      break
  return out


def load_eval_records(config, split: str = "vqa") -> list[dict]:
  """All records of `world_dir/eval/<split>` (up to `eval.max_examples` if > 0), in file order."""
  return read_records(eval_dir(config, split), int(config.eval.max_examples))
