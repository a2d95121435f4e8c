"""Accelerator chips: HBM per chip and dense bf16 peak FLOP/s, by generation and device kind.

One table for two readers: the MFU denominator (`mmscale.train.peak`) looks a device up by the
`device_kind` JAX reports, and the compile tool (`mmscale.compile`) checks a compiled step against
the chip's HBM. `hbm_bytes` is what XLA's TPU compiler lets a program use (its "available HBM",
read from libtpu's out-of-memory message for each generation: slightly below the datasheet's
capacity, e.g. 15.75 GiB of a v5e's 16); GPU figures are the datasheet's. Peaks are per chip
(a v4 / v5p chip has two TensorCores; JAX shows one device per chip), dense (no sparsity).
"""

from __future__ import annotations

import dataclasses

from mmscale.registry import Registry

GIB = 1 << 30


@dataclasses.dataclass(frozen=True)
class Chip:
  """One accelerator generation.

  name: our short name ('v5p', 'h100'); device_kinds: what `jax.Device.device_kind` says for it;
  platform: 'tpu' | 'gpu'; hbm_bytes: memory one program may use per chip; peak_bf16_flops:
  dense bfloat16 matmul FLOP/s per chip (datasheet).
  """
  name: str
  device_kinds: tuple[str, ...]
  platform: str
  hbm_bytes: int
  peak_bf16_flops: float


CHIPS: Registry[Chip] = Registry("accelerator chip")
for _chip in (
    Chip("v4", ("TPU v4",), "tpu", int(30.75 * GIB), 275e12),
    Chip("v5e", ("TPU v5 lite", "TPU v5e"), "tpu", int(15.75 * GIB), 197e12),
    Chip("v5p", ("TPU v5", "TPU v5p"), "tpu", int(95.74 * GIB), 459e12),
    Chip("v6e", ("TPU v6 lite", "TPU v6e"), "tpu", int(31.25 * GIB), 918e12),
    Chip("a100", ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe"), "gpu", 80 * 10**9, 312e12),
    Chip("h100", ("NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H100 NVL"), "gpu",
         80 * 10**9, 989e12),
    Chip("h200", ("NVIDIA H200", "NVIDIA H200 NVL"), "gpu", 141 * 10**9, 989e12),
    Chip("b200", ("NVIDIA B200",), "gpu", 180 * 10**9, 2250e12),
):
  CHIPS.add(_chip.name, _chip)


def chip_of_device_kind(device_kind: str) -> Chip | None:
  """The chip JAX's `device_kind` names (exact, else by the generation's marker in the name, e.g.
  'NVIDIA H100 80GB HBM3' or 'TPU v5 lite'); None for CPUs and unknown devices."""
  for name in CHIPS:
    if device_kind in CHIPS.get(name).device_kinds:
      return CHIPS.get(name)
  kind = device_kind.lower()
  for name in ("a100", "h100", "h200", "b200"):
    if name in kind:
      return CHIPS.get(name)
  return None
