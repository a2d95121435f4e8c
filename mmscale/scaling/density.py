"""Semantic coverage and task diversity of a point's data arm, from the knowledge-density report.

An arm is a mixture over world arms; its density report is taken over the union of its
components' records (`mmscale.knowledge.density.report` over a chained iterator), against the
world's eval inventory (`eval/vqa`). The shared VQA share (configs/scaling/point.py `vqa_share`)
is left out: it is the same for every arm of a comparison, and counting the whole VQA directory
would give every arm VQA's coverage. Reports are cached per world and component set, since
reading a 20k-scene arm takes seconds.
"""

from __future__ import annotations

import itertools
import logging
import os

from mmscale import paths
from mmscale.data import records
from mmscale.knowledge import density as density_lib


def _cache_path(cache_dir: str, world_dir: str, components: list[str]) -> str:
  world = os.path.abspath(world_dir).strip("/").replace("/", "_")[-60:]
  return paths.join(cache_dir, f"{world}__{'+'.join(components)}.json")


def arm_density(world_dir: str, components: list[str], cache_dir: str) -> dict:
  """{coverage, coverage/<category>, task_diversity, unique_per_1k_tokens}; {} if no world.
  `cache_dir` (the sweep's, local or `gs://...`) keeps the reports."""
  components = sorted(components)
  dirs = [os.path.join(world_dir, "arms", c) for c in components]
  inventory_dir = os.path.join(world_dir, "eval", "vqa")
  if not all(os.path.isdir(d) for d in dirs) or not os.path.isdir(inventory_dir):
    logging.warning("no density report: %s lacks arms %s or eval/vqa", world_dir, components)
    return {}
  path = _cache_path(cache_dir, world_dir, components)
  if paths.exists(path):
    report = paths.read_json(path)
  else:
    recs = itertools.chain.from_iterable(records.iter_records(d) for d in dirs)
    report = density_lib.report(recs, inventory=density_lib.load_inventory(inventory_dir))
    paths.write_json(path, report, indent=1)
  out = {"coverage": report["coverage"]["overall"], "task_diversity": report["task_formats"],
         "unique_per_1k_tokens": report["unique_per_1k_tokens"]}
  for cat in density_lib.CATEGORIES:
    out[f"coverage/{cat}"] = report["coverage"][cat]["fraction"]
  return out
