"""A training workdir, loaded for analysis: its config.json, mesh, model, tokenizer and params."""

from __future__ import annotations

import json
import os

import ml_collections

from mmscale.data.batch_spec import example_batch
from mmscale.errors import MmscaleError
from mmscale.eval import params_io
from mmscale.eval.context import EvalContext
from mmscale.parallel import rules as sharding_rules
from mmscale.runtime import build_runtime


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
  """W/config.json as a ConfigDict (mesh rules back to tuples, as the trainer wrote them).
  Relative paths in it (data.world_dir) resolve against the current directory, as in training."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise MmscaleError(f"{path} does not exist: is {workdir} a training workdir?")
  with open(path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  config.mesh.rules = tuple(tuple(rule) for rule in config.mesh.rules)
  return config


def load_context(workdir: str, step: int | None = None,
                 batch_size: int | None = None) -> tuple[EvalContext, int]:
  """(EvalContext over the run's latest (or `step`) checkpoint params, the step)."""
  config = load_run_config(workdir)
  if batch_size:
    config.eval.batch_size = batch_size
  rt = build_runtime(config)
  abstract, shardings = sharding_rules.param_shardings(
      rt.model, example_batch(config, rows=1), rt.mesh, rt.rules)
  params, step = params_io.load_params(workdir, abstract, shardings, step)
  ctx = EvalContext(config=rt.config, model=rt.model, params=params, tokenizer=rt.tokenizer,
                    mesh=rt.mesh, rules=rt.rules, workdir=workdir)
  return ctx, step
