"""Loading params for evaluation: from a training workdir's checkpoint or an exported directory.

Only `params` are read (Orbax partial restore), directly into their shardings, so evaluating a
checkpoint never materialises the optimizer state.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp

from mmscale.errors import CheckpointError


def checkpoint_steps(workdir: str) -> list[int]:
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    return []
  return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


def _abstract(params, shardings):
  return jax.tree.map(lambda p, s: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=s),
                      params, shardings)


def load_params(workdir: str, abstract_params, shardings, step: int | None = None):
  """Params of `workdir/checkpoints/<step>` (default: latest). Returns (params, step)."""
  steps = checkpoint_steps(workdir)
  if not steps:
    raise CheckpointError(f"no checkpoint under {os.path.join(workdir, 'checkpoints')}: "
                          "train first, or pass an exported params directory")
  step = steps[-1] if step is None else step
  if step not in steps:
    raise CheckpointError(f"no checkpoint for step {step} in {workdir}; available: {steps}")
  path = os.path.abspath(os.path.join(workdir, "checkpoints", str(step), "state"))  # Orbax: absolute
  target = {"params": _abstract(abstract_params, shardings)}
  with ocp.PyTreeCheckpointer() as ckptr:
    restored = ckptr.restore(path, args=ocp.args.PyTreeRestore(
        item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
        partial_restore=True))
  return restored["params"], step


def load_exported_params(export_dir: str, abstract_params, shardings):
  """Params written by `tools/export.py` (a plain Orbax StandardCheckpointer directory)."""
  path = os.path.join(os.path.abspath(export_dir), "params")
  if not os.path.isdir(path):
    raise CheckpointError(f"{export_dir} has no params/ directory (is it a tools/export.py output?)")
  with ocp.StandardCheckpointer() as ckptr:
    return ckptr.restore(path, _abstract(abstract_params, shardings))
