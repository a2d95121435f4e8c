"""The MFU denominator: a datasheet peak per accelerator chip, measured only on CPU."""

import dataclasses

import jax
import pytest

from mmscale.errors import ConfigError
from mmscale.parallel.chips import CHIPS, chip_of_device_kind
from mmscale.train import peak


@dataclasses.dataclass
class FakeDevice:
  platform: str
  device_kind: str


@pytest.mark.parametrize("platform, kind, expected", [
    ("tpu", "TPU v4", 275e12), ("tpu", "TPU v5 lite", 197e12), ("tpu", "TPU v5", 459e12),
    ("tpu", "TPU v6 lite", 918e12), ("gpu", "NVIDIA A100-SXM4-80GB", 312e12),
    ("gpu", "NVIDIA H100 80GB HBM3", 989e12), ("gpu", "NVIDIA H200", 989e12),
    ("gpu", "NVIDIA B200", 2250e12)])
def test_accelerators_use_the_chip_table(platform, kind, expected):
  assert peak.device_peak_flops("bfloat16", FakeDevice(platform, kind)) == expected
  assert peak.device_peak_flops("float32", FakeDevice(platform, kind)) == expected


def test_unknown_accelerator_names_the_override_field():
  with pytest.raises(ConfigError, match="train.peak_flops_per_device.*NVIDIA L4"):
    peak.device_peak_flops("bfloat16", FakeDevice("gpu", "NVIDIA L4"))


def test_cpu_is_measured():
  assert jax.devices()[0].platform == "cpu"
  measured = peak.device_peak_flops("float32")
  assert 1e8 < measured < 1e14  # a CPU core's matmul rate, far below any table entry


def test_every_chip_is_found_by_its_device_kinds():
  for name in CHIPS:
    chip = CHIPS.get(name)
    for kind in chip.device_kinds:
      assert chip_of_device_kind(kind) is chip
  assert chip_of_device_kind("cpu") is None


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_matmul_operands_are_of_the_dtype_measured(dtype):
  a, b = peak.matmul_operands(64, dtype)
  assert a.dtype == b.dtype == jax.numpy.dtype(dtype)
  assert 0.5 < float(jax.numpy.std((a @ b).astype("float32"))) < 2.0  # unit-scale products


def test_bf16_products_accumulated_in_float32_are_measured():
  assert peak.jax_matmul_flops(64, "bfloat16", repeats=1, accumulate="float32") > 0
