"""Device mesh from config, and multi-host initialisation.

We build meshes with `AxisType.Auto` axes: the classic `jit` + `with_sharding_constraint` model,
where XLA's partitioner propagates shardings from the logical-axis annotations. (JAX's default
Explicit axes reject flax layers whose contracting dimension is sharded, e.g. fsdp weights.)

Multi-slice TPU (several slices joined over the data-centre network, DCN): when the devices
report more than one `slice_index`, the mesh is built with `create_hybrid_device_mesh` and the
slices are laid along the `data` axis, so only the data-parallel gradient all-reduce crosses
DCN; `fsdp`, `tensor` and `expert` stay on each slice's fast ICI links (docs/launch.md).
"""

from __future__ import annotations

import logging
import math
import os

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

from mmscale.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor", "expert")


def make_mesh(shape: dict[str, int], devices=None) -> Mesh:
  """Mesh with axes ('data', 'fsdp', 'tensor', 'expert') of the resolved `shape`
  (`mmscale.config.validate` resolves `config.mesh.shape` once, with `resolve_mesh_shape`).

  Devices are laid out by `jax.make_mesh`, which orders them by physical topology on TPU/GPU so
  the inner (tensor) axis gets the fastest links.
  """
  devices = jax.devices() if devices is None else devices
  sizes = tuple(int(shape[axis]) for axis in MESH_AXES)
  if math.prod(sizes) != len(devices):
    raise ConfigError("mesh.shape", f"{dict(shape)} needs {math.prod(sizes)} devices, got "
                      f"{len(devices)}")
  axis_types = (AxisType.Auto,) * len(MESH_AXES)
  num_slices = len({getattr(d, "slice_index", 0) for d in devices})
  if num_slices > 1:
    return Mesh(_hybrid_devices(sizes, num_slices, devices), MESH_AXES, axis_types=axis_types)
  if len(devices) == jax.device_count() and devices == jax.devices():
    return jax.make_mesh(sizes, MESH_AXES, axis_types=axis_types)
  if devices[0].platform == "tpu":  # e.g. a compile target's topology: lay out by its torus
    from jax.experimental import mesh_utils  # pylint: disable=import-outside-toplevel
    return Mesh(mesh_utils.create_device_mesh(sizes, devices, allow_split_physical_axes=True),
                MESH_AXES, axis_types=axis_types)
  return Mesh(np.asarray(devices).reshape(sizes), MESH_AXES, axis_types=axis_types)


def _hybrid_devices(sizes: tuple[int, ...], num_slices: int, devices) -> np.ndarray:
  """Device array for a multi-slice run: `data` split into slices (DCN) x per-slice data (ICI)."""
  if sizes[0] % num_slices:
    raise ConfigError("mesh.shape.data", f"{sizes[0]} is not divisible by the {num_slices} TPU "
                      f"slices (slices are laid along data); e.g. data={num_slices * max(1, sizes[0] // num_slices)}")
  from jax.experimental import mesh_utils  # pylint: disable=import-outside-toplevel
  ici = (sizes[0] // num_slices,) + tuple(sizes[1:])
  dcn = (num_slices,) + (1,) * (len(sizes) - 1)
  return mesh_utils.create_hybrid_device_mesh(ici, dcn, devices=devices)


def _fill_free_axis(shape: dict[str, int], num_devices: int) -> dict[str, int]:
  """Axis sizes with the one `-1` axis filled so the product equals `num_devices`."""
  unknown = set(shape) - set(MESH_AXES)
  if unknown:
    raise ConfigError(f"mesh.shape.{sorted(unknown)[0]}", f"unknown mesh axis; expected {MESH_AXES}")
  shape = {axis: int(shape.get(axis, 1)) for axis in MESH_AXES}
  free = [axis for axis, size in shape.items() if size == -1]
  if len(free) > 1:
    raise ConfigError(f"mesh.shape.{free[1]}", "at most one axis may be -1")
  for axis, size in shape.items():
    if size == 0 or size < -1:
      raise ConfigError(f"mesh.shape.{axis}", f"expected a positive size or -1, got {size}")
  fixed = math.prod(size for size in shape.values() if size != -1)
  if free:
    if num_devices % fixed:
      raise ConfigError(f"mesh.shape.{free[0]}",
                        f"cannot fill: {num_devices} devices not divisible by the other axes ({fixed})")
    shape[free[0]] = num_devices // fixed
  if math.prod(shape.values()) != num_devices:
    raise ConfigError("mesh.shape", f"product of {shape} is {math.prod(shape.values())}, expected "
                      f"the device count {num_devices}; e.g. use data=-1 to fill")
  return shape


def suggest_mesh(shape: dict[str, int], num_devices: int) -> dict[str, int]:
  """A mesh that fits `num_devices`, keeping tensor/expert axes where they divide it."""
  out = {"data": 1, "fsdp": 1, "tensor": 1, "expert": 1}
  rest = num_devices
  for axis in ("tensor", "expert", "fsdp"):
    if shape.get(axis, 1) > 0 and rest % shape.get(axis, 1) == 0:
      out[axis] = shape.get(axis, 1)
      rest //= out[axis]
  out["data"] = rest
  return out


def resolve_mesh_shape(mesh_shape, num_devices: int,
                       num_processes: int | None = None) -> dict[str, int]:
  """`config.mesh.shape` (axis -> size, one may be -1) -> the sizes for `num_devices`.

  A mesh that does not fit fails naming the mesh, the devices and a mesh that fits, as flags.
  Multi-host launches reach this right after `jax.distributed.initialize` (before any state is
  built or compiled), so a mesh written for another slice size fails in seconds on every host;
  launchers call it with the target's device and host counts before they start anything.
  """
  asked = dict(mesh_shape)
  try:
    return _fill_free_axis(asked, num_devices)
  except ConfigError as e:
    if not e.field.startswith("mesh.shape") or set(asked) - set(MESH_AXES):
      raise
    asked = {axis: int(asked.get(axis, 1)) for axis in MESH_AXES}
    fit = suggest_mesh({a: (s if s > 0 else 1) for a, s in asked.items()}, num_devices)
    flags = " ".join(f"--config.mesh.shape.{a}={s}" for a, s in fit.items())
    procs = jax.process_count() if num_processes is None else num_processes
    raise ConfigError(e.field, f"mesh {asked} does not fit {num_devices} devices ({procs} "
                      f"process(es) x {num_devices // procs} local); a mesh that fits "
                      f"{num_devices} devices: {fit} ({flags}). Cause: {e}") from None


def check_mesh_fits(config, num_devices: int, num_processes: int | None = None) -> dict[str, int]:
  """`resolve_mesh_shape` of a config: the launchers' check of a target before they start it."""
  return resolve_mesh_shape(config.mesh.shape, num_devices, num_processes)


def _slurm_tasks() -> int:
  return int(os.environ.get("SLURM_STEP_NUM_TASKS") or os.environ.get("SLURM_NTASKS") or 1)


def distributed_env() -> str:
  """Which multi-process environment this process is in: 'explicit', 'slurm', 'tpu' or 'none'.

  'explicit': MMSCALE_COORDINATOR (+ MMSCALE_NUM_PROCESSES, MMSCALE_PROCESS_ID), used by tests,
  `mmscale.launch.local_multiprocess` and any cluster we have no detector for.
  'slurm': an `srun` step with more than one task (JAX reads SLURM_* itself).
  'tpu': a multi-host TPU VM slice (TPU_WORKER_HOSTNAMES names more than one worker) or a
  multi-slice run (MEGASCALE_COORDINATOR_ADDRESS); JAX asks the TPU metadata itself.
  """
  if os.environ.get("MMSCALE_COORDINATOR"):
    return "explicit"
  if "SLURM_JOB_ID" in os.environ and _slurm_tasks() > 1:
    return "slurm"
  hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  if len([h for h in hosts.split(",") if h]) > 1 or os.environ.get("MEGASCALE_COORDINATOR_ADDRESS"):
    return "tpu"
  return "none"


def _slurm_local_device_ids() -> list[int] | None:
  """GPUs this SLURM task drives. JAX alone assumes one GPU per task, GPU = SLURM_LOCALID:
  right for `--ntasks-per-node=<gpus>` without binding, wrong when SLURM binds one GPU per task
  (the task sees it as GPU 0) or when one task per node drives all of them."""
  visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d]
  if not visible:
    return None
  nodes = int(os.environ.get("SLURM_STEP_NUM_NODES") or os.environ.get("SLURM_NNODES") or 1)
  if len(visible) == 1:
    return [0]
  if _slurm_tasks() <= nodes:  # one task per node: all its GPUs
    return list(range(len(visible)))
  return None


def maybe_initialize_distributed() -> None:
  """Starts JAX's multi-controller runtime when the environment describes several processes.

  Must run before anything touches a device. Safe to call twice (a second call is a no-op). A
  SLURM job whose tasks were not started by `srun` has no step environment; JAX would then hang
  waiting for peers, so we fail with the fix instead.
  """
  if jax.distributed.is_initialized():
    return
  env = distributed_env()
  if env == "explicit":
    missing = [v for v in ("MMSCALE_NUM_PROCESSES", "MMSCALE_PROCESS_ID") if v not in os.environ]
    if missing:
      raise RuntimeError(f"MMSCALE_COORDINATOR is set but {', '.join(missing)} is not")
    if os.environ.get("JAX_PLATFORMS", "") == "cpu" or jax.config.jax_platforms == "cpu":
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=os.environ["MMSCALE_COORDINATOR"],
        num_processes=int(os.environ["MMSCALE_NUM_PROCESSES"]),
        process_id=int(os.environ["MMSCALE_PROCESS_ID"]))
  elif env == "slurm":
    if "SLURM_STEP_NODELIST" not in os.environ or "SLURM_PROCID" not in os.environ:
      raise RuntimeError(f"SLURM job with {_slurm_tasks()} tasks but no srun step environment: "
                         "start training with `srun python -m mmscale.train ...` "
                         "(launch/slurm_gpu.sbatch does)")
    jax.distributed.initialize(local_device_ids=_slurm_local_device_ids())
  elif env == "tpu":
    jax.distributed.initialize()
  logging.info("process %d of %d, %d local / %d global devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


def process_batch_shards(mesh: Mesh, rules) -> tuple[int, list[int]]:
  """(number of batch shards, the shards this process must load).

  A batch shard is one block of rows of the global batch: the batch axis is split into as many
  blocks as the mesh axes it is sharded over (data x fsdp by default). Loading data by shard
  rather than by process makes the global batch independent of how many processes feed it (a
  2-host and a 1-host run of one mesh see the same rows), and is right when several processes
  hold the same rows (e.g. a tensor axis spanning hosts): each loads the shards its devices need.
  """
  from mmscale.parallel import rules as sharding_rules  # pylint: disable=import-outside-toplevel
  sharding = sharding_rules.batch_sharding(mesh, rules)
  spec = sharding.spec[0] if len(sharding.spec) else None
  axes = () if spec is None else (spec if isinstance(spec, tuple) else (spec,))
  num = math.prod(mesh.shape[a] for a in axes)
  local = sorted({idx[0].start or 0 for idx in
                  sharding.addressable_devices_indices_map((num,)).values()})
  if local != list(range(local[0], local[0] + len(local))):
    raise ConfigError("mesh.shape", f"process {jax.process_index()} holds batch shards {local}, "
                      "not a contiguous block; put the batch axes (data, fsdp) outermost")
  return num, local
