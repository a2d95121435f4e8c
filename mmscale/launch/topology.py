"""What a launch target holds (devices, hosts), and the mesh check launchers run before starting.

TPU accelerator types name chips differently by generation: v5e (`v5litepod-N`) and v6e (`v6e-N`)
count chips, v4 and v5p (`v5p-N`) count TensorCores (two per chip, one JAX device per chip).
Multi-host slices have 4 chips per host; the single-host v5e / v6e shapes (1, 4, 8) have them all
on one host. GPU clusters: nodes x GPUs per node, one device per GPU.
"""

from __future__ import annotations

import dataclasses
import re

from mmscale import config as config_lib
from mmscale.errors import ConfigError

# family -> (name prefix aliases, accelerator-type units per chip, default runtime version)
TPU_FAMILIES = {
    "v4": (("v4",), 2, "tpu-ubuntu2204-base"),
    "v5e": (("v5litepod", "v5e"), 1, "v2-alpha-tpuv5-lite"),
    "v5p": (("v5p",), 2, "v2-alpha-tpuv5"),
    "v6e": (("v6e",), 1, "v2-alpha-tpuv6e"),
}
CHIPS_PER_HOST = 4


@dataclasses.dataclass(frozen=True)
class Target:
  """Devices and hosts (JAX processes) a launch will run on."""
  devices: int
  hosts: int
  description: str
  slices: int = 1


def tpu_family(accelerator_type: str) -> str:
  prefix = accelerator_type.rsplit("-", 1)[0]
  for family, (aliases, _, _) in TPU_FAMILIES.items():
    if prefix in aliases:
      return family
  raise ValueError(f"unknown TPU accelerator type {accelerator_type!r}; expected one of "
                   f"{[a for f in TPU_FAMILIES.values() for a in f[0]]} followed by -N")


def tpu_target(accelerator_type: str, num_slices: int = 1) -> Target:
  """Devices and hosts of `num_slices` slices of `accelerator_type` (e.g. v5litepod-16)."""
  match = re.fullmatch(r"([a-z0-9]+)-(\d+)", accelerator_type)
  if not match:
    raise ValueError(f"accelerator type {accelerator_type!r} is not of the form NAME-N")
  family = tpu_family(accelerator_type)
  chips = int(match.group(2)) // TPU_FAMILIES[family][1]
  hosts = 1 if family in ("v5e", "v6e") and chips <= 8 else max(1, chips // CHIPS_PER_HOST)
  return Target(devices=chips * num_slices, hosts=hosts * num_slices,
                description=f"{num_slices} x {accelerator_type} ({chips} chips, {hosts} hosts each)",
                slices=num_slices)


def default_tpu_version(accelerator_type: str) -> str:
  return TPU_FAMILIES[tpu_family(accelerator_type)][2]


def gpu_target(nodes: int, gpus_per_node: int, per: str = "gpu") -> Target:
  """`nodes` x `gpus_per_node` GPUs, one JAX process per GPU (`per="gpu"`) or per node."""
  hosts = nodes * gpus_per_node if per == "gpu" else nodes
  return Target(devices=nodes * gpus_per_node, hosts=hosts,
                description=f"{nodes} nodes x {gpus_per_node} GPUs, one process per {per}")


def mesh_overrides(train_args: list[str]) -> dict[str, int]:
  """`--config.mesh.shape.AXIS=N` flags among the training arguments, as {axis: N}."""
  out = {}
  for arg in train_args:
    match = re.fullmatch(r"--config\.mesh\.shape\.(\w+)=(-?\d+)", arg)
    if match:
      out[match.group(1)] = int(match.group(2))
  return out


def check_mesh(config_spec: str, train_args: list[str], target: Target) -> dict[str, int]:
  """Loads the config (+ mesh flags) and fails, naming mesh, devices and a fitting mesh, when the
  mesh does not fit `target`: before a slice is created or a job queued."""
  from mmscale.parallel.mesh import check_mesh_fits  # pylint: disable=import-outside-toplevel
  config = config_lib.load_config(config_spec)
  for axis, size in mesh_overrides(train_args).items():
    config.mesh.shape[axis] = size
  shape = check_mesh_fits(config, target.devices, target.hosts)
  if target.slices > 1 and shape["data"] % target.slices:
    raise ConfigError(
        "mesh.shape.data", f"mesh {shape} on {target.devices} devices: data={shape['data']} is "
        f"not divisible by the {target.slices} slices (slices are laid along data); e.g. "
        f"--config.mesh.shape.data={target.slices} with fsdp={target.devices // target.slices}")
  return shape
