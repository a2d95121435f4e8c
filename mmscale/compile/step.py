"""Lowering and compiling a run's real train step for a target slice, without its devices.

Everything the trainer builds, built the same way but abstractly: the spec (`validate`), the
mesh over the target's devices, the model, the boxed abstract params
(`sharding_rules.abstract_params`), the optimizer, the sharded abstract train state
(`train.state.sharded_abstract_state`) and the jitted step (`train.step.make_train_step`). The
step is lowered on ShapeDtypeStructs that carry the run's shardings and compiled by XLA for the
target; nothing is allocated.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import jax
import numpy as np

from mmscale.data.batch import empty_rows
from mmscale.models import flops as flops_lib
from mmscale.models.registry import build_model
from mmscale.parallel import mesh as mesh_lib
from mmscale.parallel import rules as sharding_rules
from mmscale.spec import RunSpec, validate
from mmscale.train import optim
from mmscale.train.state import sharded_abstract_state
from mmscale.train.step import make_train_step


@dataclasses.dataclass
class CompiledStep:
  """The outcome of one compile.

  compiled: the XLA executable (None when the compiler ran out of HBM); memory: per-device
  bytes from `compiled.memory_analysis()` ('arguments', 'outputs', 'temporaries', 'aliased',
  'total' = arguments + outputs + temporaries - aliased), or what the out-of-memory message
  states; oom_message: the compiler's out-of-memory message (None when it fitted);
  state_bytes: per-device bytes of the train state (params + optimizer state) by its shardings;
  batch_bytes: per-device bytes of one global batch; hlo: the compiled HLO text ('' on OOM).
  """
  spec: RunSpec
  mesh_shape: dict
  num_params: int
  compiled: Any
  memory: dict
  oom_message: str | None
  state_bytes: int
  param_bytes: int
  batch_bytes: int
  replicated: list
  hlo: str


def shard_bytes(abstract_tree) -> int:
  """Bytes one device holds of a tree of ShapeDtypeStructs with shardings (the largest shard)."""
  total = 0
  for x in jax.tree.leaves(abstract_tree):
    shape = x.sharding.shard_shape(x.shape) if x.sharding is not None else x.shape
    total += math.prod(shape) * np.dtype(x.dtype).itemsize
  return total


def replicated_tensors(abstract_tree, min_bytes: int) -> list[tuple[str, tuple, int]]:
  """(path, shape, bytes) of every leaf of at least `min_bytes` that no mesh axis splits."""
  out = []
  for path, x in jax.tree_util.tree_leaves_with_path(abstract_tree):
    nbytes = math.prod(x.shape) * np.dtype(x.dtype).itemsize
    if nbytes >= min_bytes and x.sharding.shard_shape(x.shape) == tuple(x.shape) \
        and math.prod(x.sharding.mesh.shape.values()) > 1:
      out.append((jax.tree_util.keystr(path), tuple(x.shape), nbytes))
  return out


_OOM = re.compile(r"RESOURCE_EXHAUSTED|Ran out of memory|exceeds available HBM")
_SIZE = r"([\d.]+)([KMGT]?)"
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_oom(message: str) -> dict:
  """The sizes in libtpu's out-of-memory message: 'the total memory required for HLO temporaries
  (19.75G) exceeds available HBM (15.75G)' -> {'temporaries': ..., 'available': ...} bytes."""
  out = {}
  for key, pattern in (("temporaries", r"HLO temporaries \(" + _SIZE + r"\)"),
                       ("arguments", r"arguments? \(" + _SIZE + r"\)"),
                       ("available", r"available HBM \(" + _SIZE + r"\)"),
                       ("total", r"[Tt]otal hbm usage >= " + _SIZE)):
    m = re.search(pattern, message)
    if m:
      out[key] = int(float(m.group(1)) * _UNITS[m.group(2)])
  return out


def abstract_batch(spec: RunSpec, mesh) -> dict:
  """One global batch (`data.batch_size` rows) as ShapeDtypeStructs with the batch sharding."""
  sharding = sharding_rules.batch_sharding(mesh, spec.rules)
  rows = spec.config.data.batch_size
  return {k: jax.ShapeDtypeStruct((rows,) + v.shape[1:], v.dtype, sharding=sharding)
          for k, v in empty_rows(spec.layout, 1).items()}


def compile_train_step(config, devices, replicated_min_bytes: int = 1 << 20) -> CompiledStep:
  """Compiles `config`'s train step for `devices` (a target's topology devices, or real ones).

  Raises `ConfigError` for a config that does not fit the devices (mesh, batch, heads); an
  out-of-HBM compile is a result (`oom_message`), not an error.
  """
  spec = validate(config, len(devices), num_processes=1)
  mesh = mesh_lib.make_mesh(spec.mesh_shape, list(devices))
  model = build_model(config.model)
  boxed = sharding_rules.abstract_params(model, empty_rows(spec.layout, 1), mesh, spec.rules)
  num_params = flops_lib.param_count(boxed)
  tx, schedule = optim.make_optimizer(config.optim, config.train.steps, num_params)
  state, shardings = sharded_abstract_state(tx, boxed, mesh, spec.rules)
  step = make_train_step(model, tx, schedule, config, mesh, spec.rules, shardings)
  batch = abstract_batch(spec, mesh)
  with jax.set_mesh(mesh):
    lowered = step.lower(state, batch)
  compiled, oom, hlo = None, None, ""
  try:
    compiled = lowered.compile()
  except Exception as e:  # pylint: disable=broad-except  # XlaRuntimeError's class moves between jax versions
    if not _OOM.search(str(e)):
      raise
    oom = str(e).strip().splitlines()[0]
  if compiled is not None:
    m = compiled.memory_analysis()
    memory = {"arguments": int(m.argument_size_in_bytes), "outputs": int(m.output_size_in_bytes),
              "temporaries": int(m.temp_size_in_bytes), "aliased": int(m.alias_size_in_bytes)}
    memory["total"] = (memory["arguments"] + memory["outputs"] + memory["temporaries"]
                       - memory["aliased"])
    hlo = compiled.as_text() or ""
  else:
    memory = parse_oom(oom)
  return CompiledStep(
      spec=spec, mesh_shape=dict(spec.mesh_shape), num_params=num_params, compiled=compiled,
      memory=memory, oom_message=oom, state_bytes=shard_bytes(state),
      param_bytes=shard_bytes(state.params), batch_bytes=shard_bytes(batch),
      replicated=replicated_tensors(state, replicated_min_bytes), hlo=hlo)
