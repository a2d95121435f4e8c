"""An EvalContext from a config and saved params (a training checkpoint or an exported dir)."""

from __future__ import annotations

import json
import os

import ml_collections

from mmscale.data.batch_spec import example_batch
from mmscale.errors import CheckpointError
from mmscale.eval import params_io
from mmscale.eval.context import EvalContext
from mmscale.parallel import rules as sharding_rules
from mmscale.runtime import build_runtime


def load_run_config(directory: str) -> ml_collections.ConfigDict:
  """`directory/config.json` (a training workdir or a tools/export.py output) as a ConfigDict."""
  path = os.path.join(directory, "config.json")
  if not os.path.isfile(path):
    raise CheckpointError(f"{path} not found: is {directory} a training workdir or an export "
                          "directory? (or pass --config)")
  with open(path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  config.mesh.rules = tuple(tuple(rule) for rule in config.mesh.rules)
  return config


def load_context(config, workdir: str | None, *, step: int | None = None,
                 params_dir: str | None = None) -> tuple[EvalContext, int]:
  """(context with params restored into their shardings, step; -1 for exported params)."""
  rt = build_runtime(config)
  abstract, shardings = sharding_rules.param_shardings(
      rt.model, example_batch(rt.config, rows=1), rt.mesh, rt.rules)
  if params_dir:
    params, step = params_io.load_exported_params(params_dir, abstract, shardings), -1
  elif workdir:
    params, step = params_io.load_params(workdir, abstract, shardings, step)
  else:
    raise CheckpointError("no params: pass --workdir with checkpoints or --params=EXPORT_DIR")
  ctx = EvalContext(config=rt.config, model=rt.model, params=params, tokenizer=rt.tokenizer,
                    mesh=rt.mesh, rules=rt.rules, workdir=workdir or "")
  return ctx, step
