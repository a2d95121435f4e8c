"""Lowering and compiling a run's real steps for a target slice, without its devices.

Everything the trainer builds, built the same way but abstractly: the spec (`validate`), the
mesh over the target's devices, the model, the boxed abstract params
(`sharding_rules.abstract_params`), the optimizer, the sharded abstract train state
(`train.state.sharded_abstract_state`) and the jitted step (`train.step.make_train_step`). The
step is lowered on ShapeDtypeStructs that carry the run's shardings and compiled by XLA for the
target; nothing is allocated.

Evaluation and generation are compiled the same way, with the programs they run: the
evaluation forward (`eval.heldout_loss.eval_loss_sums`: logits and target NLL of one batch of
`eval.batch_size` rows, the held-out loss evaluator's step) and generation (`eval.generate`:
the prefill of a left-padded prompt batch and the scanned decode steps with the KV cache, one
program), on the params as evaluation restores them (`load_run`: sharded, no optimizer state).
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import re
import tempfile
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from mmscale.data.batch import empty_rows
from mmscale.eval import generate as generate_lib
from mmscale.eval.heldout_loss import eval_loss_sums
from mmscale.models import flops as flops_lib
from mmscale.models.registry import build_model
from mmscale.parallel import mesh as mesh_lib
from mmscale.parallel import rules as sharding_rules
from mmscale.errors import ConfigError
from mmscale.registry import Registry
from mmscale.spec import RunSpec, validate
from mmscale.train import optim
from mmscale.train.state import sharded_abstract_state
from mmscale.train.step import make_train_step


@dataclasses.dataclass
class CompiledStep:
  """The outcome of one compile.

  kind: 'train', 'eval' or 'generate'; rows: batch rows of the step; seq_len: its columns (for
  generate: the prompt's); new_tokens: tokens generated (generate only).
  compiled: the XLA executable (None when the compiler ran out of HBM); memory: per-device
  bytes from `compiled.memory_analysis()` ('arguments', 'outputs', 'temporaries', 'aliased',
  'total' = arguments + outputs + temporaries - aliased, 'peak' = XLA's peak estimate), or what
  the out-of-memory message states; oom_message: the compiler's out-of-memory message (None
  when it fitted);
  state_bytes: per-device bytes of the train state (params + optimizer state; eval and generate:
  the params) by its shardings; batch_bytes: per-device bytes of one global batch; hlo: the
  compiled HLO text ('' on OOM).
  """
  kind: str
  rows: int
  seq_len: int
  new_tokens: int
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


def abstract_batch(spec: RunSpec, mesh, rows: int | None = None,
                   length: int | None = None) -> dict:
  """One global batch (`rows`, default `data.batch_size`, x `length`, default `data.seq_len`)
  as ShapeDtypeStructs with the batch sharding."""
  sharding = sharding_rules.batch_sharding(mesh, spec.rules)
  rows = spec.config.data.batch_size if rows is None else rows
  return {k: jax.ShapeDtypeStruct((rows,) + v.shape[1:], v.dtype, sharding=sharding)
          for k, v in empty_rows(spec.layout, 1, length).items()}


def eval_rows(spec: RunSpec) -> int:
  """Rows of an evaluation batch: `eval.batch_size` rounded down to a multiple of the batch
  shards, at least one per shard (`runtime.Run.rows_per_batch`)."""
  rows = int(spec.config.eval.batch_size)
  return max(spec.batch_shards, rows - rows % spec.batch_shards)


def _compile(lowered) -> tuple[Any, dict, str | None, str]:
  """(executable or None, memory, out-of-memory message or None, HLO text) of a lowering."""
  compiled, oom, hlo = None, None, ""
  # A topology-only (compile-only) client cannot load executables back: when the environment
  # turns JAX's persistent compilation cache on, nothing compiled here may be written to it (each
  # entry would fail to read on the next compile of the same step).
  min_cache_secs = jax.config.jax_persistent_cache_min_compile_time_secs
  jax.config.update("jax_persistent_cache_min_compile_time_secs", float("inf"))
  with tempfile.TemporaryDirectory() as dump:
    try:
      # the optimized HLO is read from XLA's own text dump: Compiled.as_text() cannot read some
      # programs back (an INTERNAL RET_CHECK on splash attention's async ops in the 7B step)
      compiled = lowered.compile(compiler_options={"xla_dump_to": dump,
                                                   "xla_dump_hlo_as_text": True,
                                                   "xla_dump_hlo_as_proto": False})
    except Exception as e:  # pylint: disable=broad-except  # XlaRuntimeError's class moves between jax versions
      if not _OOM.search(str(e)):
        raise
      oom = str(e).strip().splitlines()[0]
    finally:
      jax.config.update("jax_persistent_cache_min_compile_time_secs", min_cache_secs)
    if compiled is not None:
      hlo = _dumped_hlo_text(dump)
  if compiled is None:
    return None, parse_oom(oom), oom, hlo
  m = compiled.memory_analysis()
  memory = {"arguments": int(m.argument_size_in_bytes), "outputs": int(m.output_size_in_bytes),
            "temporaries": int(m.temp_size_in_bytes), "aliased": int(m.alias_size_in_bytes)}
  memory["total"] = (memory["arguments"] + memory["outputs"] + memory["temporaries"]
                     - memory["aliased"])
  peak = getattr(m, "peak_memory_in_bytes", None)  # XLA's own peak estimate, where it has one
  if peak:
    memory["peak"] = int(peak)
  return compiled, memory, None, hlo


def _dumped_hlo_text(dump_dir: str) -> str:
  """The optimized HLO text of the modules XLA dumped into `dump_dir`."""
  texts = []
  for name in sorted(glob.glob(os.path.join(dump_dir, "*after_optimizations.txt"))):
    with open(name, encoding="utf-8") as f:
      texts.append(f.read())
  return "\n\n".join(texts)


def _abstract_model(config, devices):
  """(spec, mesh, model, boxed abstract params) of `config` over `devices`."""
  spec = validate(config, len(devices), num_processes=1)
  mesh = mesh_lib.make_mesh(spec.mesh_shape, list(devices))
  model = build_model(config.model)
  boxed = sharding_rules.abstract_params(model, empty_rows(spec.layout, 1), mesh, spec.rules)
  return spec, mesh, model, boxed


def compile_train_step(config, devices, replicated_min_bytes: int = 1 << 20) -> CompiledStep:
  """Compiles `config`'s train step for `devices` (a target's topology devices, or real ones).

  Raises `ConfigError` for a config that does not fit the devices (mesh, batch, heads); an
  out-of-HBM compile is a result (`oom_message`), not an error.
  """
  spec, mesh, model, boxed = _abstract_model(config, devices)
  num_params = flops_lib.param_count(boxed)
  tx, schedule = optim.make_optimizer(config.optim, config.train.steps, num_params)
  state, shardings = sharded_abstract_state(tx, boxed, mesh, spec.rules)
  step = make_train_step(model, tx, schedule, config, mesh, spec.rules, shardings)
  batch = abstract_batch(spec, mesh)
  with jax.set_mesh(mesh):
    lowered = step.lower(state, batch)
  compiled, memory, oom, hlo = _compile(lowered)
  return CompiledStep(
      kind="train", rows=int(config.data.batch_size), seq_len=spec.layout.seq_len, new_tokens=0,
      spec=spec, mesh_shape=dict(spec.mesh_shape), num_params=num_params, compiled=compiled,
      memory=memory, oom_message=oom, state_bytes=shard_bytes(state),
      param_bytes=shard_bytes(state.params), batch_bytes=shard_bytes(batch),
      replicated=replicated_tensors(state, replicated_min_bytes), hlo=hlo)


def compile_eval_step(config, devices, replicated_min_bytes: int = 1 << 20) -> CompiledStep:
  """Compiles the evaluation forward (`eval_loss_sums` on one batch of `eval_rows` x
  `data.seq_len`) for `devices`, on the params alone, sharded as `load_run` restores them."""
  spec, mesh, model, boxed = _abstract_model(config, devices)
  params = sharding_rules.sharded_abstract(boxed, mesh, spec.rules)
  rows = eval_rows(spec)
  batch = abstract_batch(spec, mesh, rows)
  with jax.set_mesh(mesh), nn.logical_axis_rules(spec.rules):
    lowered = eval_loss_sums.lower(model, params, batch)
  return _inference_step("eval", spec, boxed, params, batch, rows, spec.layout.seq_len, 0,
                         lowered, replicated_min_bytes)


def generate_lengths(config, prompt_len: int | None = None,
                     max_new_tokens: int | None = None) -> tuple[int, int]:
  """(prompt columns, generated tokens) compiled by default: the longest the evaluation suite
  uses, a prompt of `data.seq_len` columns continued by `max(eval.max_decode_len,
  eval.caption_max_len)` tokens."""
  new = max(int(config.eval.max_decode_len), int(config.eval.caption_max_len)) \
      if max_new_tokens is None else int(max_new_tokens)
  return (int(config.data.seq_len) if prompt_len is None else int(prompt_len)), new


def compile_generate_step(config, devices, prompt_len: int | None = None,
                          max_new_tokens: int | None = None,
                          replicated_min_bytes: int = 1 << 20) -> CompiledStep:
  """Compiles generation (`eval.generate`: prefill + scanned decode with the KV cache, one
  program) of `eval_rows` prompts of `prompt_len` columns continued by `max_new_tokens` tokens
  (defaults: `generate_lengths`), greedy, for `devices`."""
  spec, mesh, model, boxed = _abstract_model(config, devices)
  params = sharding_rules.sharded_abstract(boxed, mesh, spec.rules)
  prompt_len, new_tokens = generate_lengths(config, prompt_len, max_new_tokens)
  if prompt_len < 1 or new_tokens < 1:
    raise ConfigError("eval.max_decode_len", f"prompt length {prompt_len} and generated tokens "
                      f"{new_tokens} must both be >= 1")
  rows = eval_rows(spec)
  prompt = abstract_batch(spec, mesh, rows, prompt_len)
  rng = jax.ShapeDtypeStruct((), jax.eval_shape(jax.random.key, 0).dtype,
                             sharding=sharding_rules.replicated(mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(spec.rules):
    lowered = generate_lib.lower_generate(model, params, prompt, max_new_tokens=new_tokens,
                                          rng=rng)
  return _inference_step("generate", spec, boxed, params, prompt, rows, prompt_len,
                         new_tokens, lowered, replicated_min_bytes)


def _inference_step(kind, spec, boxed, params, batch, rows, seq_len, new_tokens, lowered,
                    replicated_min_bytes) -> CompiledStep:
  compiled, memory, oom, hlo = _compile(lowered)
  param_bytes = shard_bytes(params)
  return CompiledStep(
      kind=kind, rows=rows, seq_len=seq_len, new_tokens=new_tokens, spec=spec,
      mesh_shape=dict(spec.mesh_shape), num_params=flops_lib.param_count(boxed),
      compiled=compiled, memory=memory, oom_message=oom, state_bytes=param_bytes,
      param_bytes=param_bytes, batch_bytes=shard_bytes(batch),
      replicated=replicated_tensors(params, replicated_min_bytes), hlo=hlo)


# step kind -> compile(config, devices, prompt_len=None, max_new_tokens=None) -> CompiledStep;
# the lengths are generation's (the other steps take their shapes from the config)
STEPS = Registry("compile step")
STEPS.add("train", lambda config, devices, **lengths: compile_train_step(config, devices))
STEPS.add("eval", lambda config, devices, **lengths: compile_eval_step(config, devices))
STEPS.add("generate", compile_generate_step)
STEP_ORDER = ("train", "eval", "generate")  # what --step=all compiles, in this order
