"""Device mesh from config, and multi-host initialisation.

We build meshes with `AxisType.Auto` axes: the classic `jit` + `with_sharding_constraint` model,
where XLA's partitioner propagates shardings from the logical-axis annotations. (JAX's default
Explicit axes reject flax layers whose contracting dimension is sharded, e.g. fsdp weights.)
"""

from __future__ import annotations

import logging
import os

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

from mmscale.config import MESH_AXES, resolve_mesh_shape


def make_mesh(config, devices=None) -> Mesh:
  """Mesh with axes ('data', 'fsdp', 'tensor', 'expert') sized by `config.mesh.shape`.

  Devices are laid out by `jax.make_mesh`, which orders them by physical topology on TPU/GPU so
  the inner (tensor) axis gets the fastest links.
  """
  devices = jax.devices() if devices is None else devices
  shape = resolve_mesh_shape(config, len(devices))
  sizes = tuple(shape[axis] for axis in MESH_AXES)
  if len(devices) == jax.device_count() and devices == jax.devices():
    return jax.make_mesh(sizes, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))
  return Mesh(np.asarray(devices).reshape(sizes), MESH_AXES,
              axis_types=(AxisType.Auto,) * len(MESH_AXES))


def maybe_initialize_distributed() -> None:
  """Starts JAX's multi-controller runtime when the environment describes several processes.

  On TPU VMs and SLURM clusters `jax.distributed.initialize()` discovers everything itself; for
  explicit setups we read MMSCALE_COORDINATOR / MMSCALE_NUM_PROCESSES / MMSCALE_PROCESS_ID.
  """
  coordinator = os.environ.get("MMSCALE_COORDINATOR")
  if coordinator:
    if os.environ.get("JAX_PLATFORMS", "") == "cpu" or jax.config.jax_platforms == "cpu":
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=int(os.environ["MMSCALE_NUM_PROCESSES"]),
        process_id=int(os.environ["MMSCALE_PROCESS_ID"]))
  elif "SLURM_JOB_ID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
    jax.distributed.initialize()
  logging.info("process %d of %d, %d local / %d global devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
