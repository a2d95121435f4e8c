"""Compile targets by their cloud names: 'v5p-256', 'v5e-64' / 'v5litepod-64', 'v4-8', 'v6e-16'.

A TPU target is a slice of one chip generation; JAX compiles for it on any machine through
libtpu's topology descriptions (`jax.experimental.topologies.get_topology_desc`), which give
device objects with the slice's physical layout but no memory behind them. The number in a
v4 / v5p name counts TensorCores (two per chip, one JAX device per chip: v5p-256 = 128 chips),
in a v5e / v6e name chips. GPU targets ('8xh100') are known by name but refused: JAX cannot
compile for a GPU without one attached.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re

from mmscale.errors import MmscaleError
from mmscale.parallel.chips import CHIPS, Chip
from mmscale.registry import Registry


class TargetError(MmscaleError):
  """A target name that is not a slice we can compile for; the message says what is."""


@dataclasses.dataclass(frozen=True)
class Generation:
  """How one TPU generation's cloud names map to slice topologies.

  chip: the Chip entry (HBM, peak); topology_prefix: libtpu's name ('v5p' in 'v5p:4x4x8');
  cores_per_chip: 2 where the cloud name counts TensorCores; dims: 3 (torus, v4/v5p) or 2;
  chip_config: libtpu's chip configuration ('megacore' joins a v4 chip's two cores into one
  device; v5p does so by default).
  """
  chip: Chip
  topology_prefix: str
  cores_per_chip: int
  dims: int
  chip_config: str = "default"
  max_chips: int = 0


GENERATIONS: Registry[Generation] = Registry("TPU generation")
GENERATIONS.add("v4", Generation(CHIPS.get("v4"), "v4", 2, 3, "megacore", 4096))
GENERATIONS.add("v5p", Generation(CHIPS.get("v5p"), "v5p", 2, 3, "default", 8960))
GENERATIONS.add("v5e", Generation(CHIPS.get("v5e"), "v5e", 1, 2, "default", 256))
GENERATIONS.add("v5litepod", GENERATIONS.get("v5e"))
GENERATIONS.add("v6e", Generation(CHIPS.get("v6e"), "v6e", 1, 2, "default", 256))

_NAME = re.compile(r"^(?P<gen>[a-z0-9]+)-(?P<count>\d+)$")
_GPU_NAME = re.compile(r"^(?P<count>\d+)x(?P<chip>[a-z0-9]+)$")


@dataclasses.dataclass(frozen=True)
class Target:
  """A resolved slice: `num_slices` x `topology` (libtpu name, e.g. 'v5p:4x4x8') of `chip`."""
  name: str
  chip: Chip
  topology: str
  chip_config: str
  num_chips: int  # per slice
  num_slices: int = 1

  @property
  def num_devices(self) -> int:
    return self.num_chips * self.num_slices

  def devices(self):
    """The target's devices (no memory behind them): what `jit(...).lower(...).compile()` of a
    mesh over them compiles for."""
    # Several compiles may run at once (tests in parallel, a sweep of targets): libtpu's
    # one-process-per-host lock guards real chips, and a topology description has none.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    from jax.experimental import topologies  # pylint: disable=import-outside-toplevel
    return topologies.get_topology_desc(
        platform="tpu", topology_name=self.topology, chip_config_name=self.chip_config,
        chips_per_host_bounds=_host_bounds(self.topology), num_slices=self.num_slices).devices


def _host_bounds(topology: str) -> tuple[int, int, int]:
  """Chips per host: 2x2x1 (4 chips), or the whole slice when it is smaller."""
  dims = [int(d) for d in topology.split(":")[1].split("x")] + [1]
  return (min(2, dims[0]), min(2, dims[1]), 1)


def slice_shape(num_chips: int, dims: int) -> tuple[int, ...]:
  """The cloud's slice shape for `num_chips`: powers of two, as even as possible, the larger
  dimensions last (v5p-256 -> 4x4x8, v5e-64 -> 8x8, v5e-8 -> 2x4, v4-8 -> 2x2x1)."""
  if num_chips < 1 or num_chips & (num_chips - 1):
    raise ValueError(num_chips)
  shape = [1] * dims
  for i in range(int(math.log2(num_chips))):
    shape[dims - 1 - (i % dims)] *= 2
  if dims == 3 and num_chips == 4:  # the smallest 3-D slice is 2x2x1
    return (2, 2, 1)
  return tuple(sorted(shape))


def resolve_target(name: str, num_slices: int = 1) -> Target:
  """'v5p-256' (x `num_slices`) -> Target; an unknown or impossible name raises `TargetError`
  saying what is accepted."""
  name = str(name).strip().lower()
  if num_slices < 1:
    raise TargetError(f"--num_slices: expected >= 1, got {num_slices}")
  gpu = _GPU_NAME.match(name)
  if gpu or name in CHIPS and CHIPS.get(name).platform == "gpu":
    raise TargetError(f"target '{name}': GPU targets cannot be compiled without the GPU attached "
                      "(JAX has no ahead-of-time GPU topology); run `python -m mmscale.compile` "
                      "on a GPU host, or pick a TPU target (v4-N, v5e-N, v5litepod-N, v5p-N, "
                      "v6e-N)")
  match = _NAME.match(name)
  if not match or match["gen"] not in GENERATIONS:
    raise TargetError(f"target '{name}': expected <generation>-<size> with generation one of "
                      f"{GENERATIONS.names()}, e.g. v5p-256 or v5e-64")
  gen = GENERATIONS.get(match["gen"])
  count = int(match["count"])
  chips, rest = divmod(count, gen.cores_per_chip)
  if rest or chips < 1 or chips & (chips - 1) or (gen.max_chips and chips > gen.max_chips) \
      or (gen.dims == 3 and chips < 4 and chips != 1):
    unit = "TensorCores (2 per chip)" if gen.cores_per_chip == 2 else "chips"
    raise TargetError(f"target '{name}': the size counts {unit} and must give a power-of-two "
                      f"number of chips up to {gen.max_chips}, e.g. {match['gen']}-"
                      f"{8 * gen.cores_per_chip}")
  shape = slice_shape(chips, gen.dims)
  topology = f"{gen.topology_prefix}:{'x'.join(str(d) for d in shape)}"
  return Target(name=name, chip=gen.chip, topology=topology, chip_config=gen.chip_config,
                num_chips=chips, num_slices=int(num_slices))
