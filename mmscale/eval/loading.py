"""The one run loader: a saved run (training workdir or export directory) -> a `Run` with params.

Evaluation, analysis, generation and export all load a run through `load_run`. Only `params`
are read (Orbax partial restore), straight into their shardings, so loading a checkpoint never
materialises the optimizer state nor a whole tensor on one host. A run may be local or in an
object store (`gs://bucket/run`, any etils.epath path), as training writes it.
"""

from __future__ import annotations

import json

import ml_collections
import orbax.checkpoint as ocp

from mmscale import paths
from mmscale.errors import CheckpointError
from mmscale.parallel import rules as sharding_rules
from mmscale.runtime import Run, build_run


def read_run_config(directory: str) -> ml_collections.ConfigDict:
  """`directory/config.json` (a training workdir or a tools/export.py output) as a ConfigDict.
  Relative paths in it (data.world_dir) resolve against the current directory, as in training."""
  path = paths.join(directory, "config.json")
  if not paths.is_file(path):
    raise CheckpointError(f"{path} not found: is {directory} a training workdir or an export "
                          "directory? (or pass --config)")
  config = ml_collections.ConfigDict(json.loads(paths.read_text(path)))
  config.mesh.rules = sharding_rules.logical_rules(config.mesh.rules)
  return config


def checkpoint_steps(workdir: str) -> list[int]:
  """Steps with a checkpoint under `workdir/checkpoints`, ascending."""
  return sorted(int(name) for name in paths.listdir(paths.join(workdir, "checkpoints"))
                if name.isdigit())


def _restore_checkpoint_params(workdir: str, target, step: int | None):
  steps = checkpoint_steps(workdir)
  if not steps:
    raise CheckpointError(f"no checkpoint under {paths.join(workdir, 'checkpoints')}: "
                          "train first, or pass an exported params directory")
  step = steps[-1] if step is None else step
  if step not in steps:
    raise CheckpointError(f"no checkpoint for step {step} in {workdir}; available: {steps}")
  path = paths.path(paths.absolute(workdir)) / "checkpoints" / str(step) / "state"
  item = {"params": target}
  with ocp.PyTreeCheckpointer() as ckptr:
    restored = ckptr.restore(path, args=ocp.args.PyTreeRestore(
        item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
        partial_restore=True))
  return restored["params"], step


def _restore_exported_params(export_dir: str, target):
  path = paths.path(paths.absolute(export_dir)) / "params"
  if not path.is_dir():
    raise CheckpointError(f"{export_dir} has no params/ directory (is it a tools/export.py output?)")
  with ocp.StandardCheckpointer() as ckptr:
    return ckptr.restore(path, target)


def load_run(workdir: str | None = None, *, step: int | None = None,
             params_dir: str | None = None, config=None,
             eval_overrides: dict | None = None) -> tuple[Run, int]:
  """(Run with params restored into their shardings, step; -1 for exported params).

  Args:
    workdir: a training run (its checkpoints, and its config.json unless `config` is given).
    step: the checkpoint step (default: the latest).
    params_dir: an export directory (tools/export.py) to read params from instead; its
      config.json is used when `workdir` has none.
    config: the config to use instead of the saved one.
    eval_overrides: `config.eval` fields to set before validation (e.g. from command flags).
  """
  if not workdir and not params_dir:
    raise CheckpointError("no params: pass --workdir with checkpoints or --params=EXPORT_DIR")
  if config is None:
    has_config = workdir and paths.is_file(paths.join(workdir, "config.json"))
    config = read_run_config(workdir if has_config or not params_dir else params_dir)
  if eval_overrides:
    with config.unlocked():
      config.eval.update({k: v for k, v in eval_overrides.items() if v is not None})
  run = build_run(config, workdir or "")
  target = sharding_rules.sharded_abstract(run.abstract_params(), run.mesh, run.rules)
  if params_dir:
    run.params, step = _restore_exported_params(params_dir, target), -1
  else:
    run.params, step = _restore_checkpoint_params(workdir, target, step)
  return run, step

