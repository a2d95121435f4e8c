"""Peak FLOP/s per device: the denominator of model FLOPs utilisation (MFU).

On an accelerator, the chip's dense bf16 datasheet peak from the table in
`mmscale.parallel.chips`, looked up by the `device_kind` JAX reports (TPU v4 / v5e / v5p / v6e,
A100 / H100 / H200 / B200): a measured chain of small matmuls is launch-bound there and would
overstate MFU. On CPU we measure, because the achievable peak depends on the BLAS, the core
count and the clock. `train.peak_flops_per_device` overrides both (e.g. for a GPU the table does
not know, or to quote an fp32 peak).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from mmscale.errors import ConfigError
from mmscale.parallel.chips import chip_of_device_kind


def _best_seconds(fn, repeats: int) -> float:
  fn()  # warm up / compile
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return best


def matmul_operands(n: int, dtype: str) -> tuple[jax.Array, jax.Array]:
  """(a, b), two dtype[n, n] arrays of unit-scale products (b scaled by n^-1/2 before the cast:
  dividing a bf16 array by a numpy float64 scalar would promote it to float32 and time a mixed
  bf16 x float32 product instead)."""
  a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype=dtype)
  b = jnp.asarray(np.random.default_rng(1).standard_normal((n, n)) / np.sqrt(n), dtype=dtype)
  return a, b


def jax_matmul_flops(n: int = 1024, dtype: str = "float32", repeats: int = 5, chain: int = 4,
                     accumulate: str | None = None) -> float:
  """FLOP/s of a chain of n x n matmuls on the default device (one device).

  accumulate='float32': each product is dtype x dtype -> float32 (`preferred_element_type`),
  cast back to dtype, the product mmscale's bf16 steps use on CPU (mmscale/models/mixed_dot.py);
  None: the plain dtype x dtype -> dtype product."""
  a, b = matmul_operands(n, dtype)

  @jax.jit
  def matmuls(x):
    for _ in range(chain):
      x = jnp.matmul(x, b, preferred_element_type=accumulate).astype(dtype)
    return x

  seconds = _best_seconds(lambda: matmuls(a).block_until_ready(), repeats)
  return 2 * n ** 3 * chain / seconds


def numpy_matmul_flops(n: int = 1024, dtype: str = "float32", repeats: int = 5) -> float:
  """FLOP/s of numpy's BLAS (the other credible CPU peak)."""
  a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
  b = np.random.default_rng(1).standard_normal((n, n)).astype(dtype)
  return 2 * n ** 3 / _best_seconds(lambda: a @ b, repeats)


def device_peak_flops(dtype: str = "float32", device=None) -> float:
  """Peak FLOP/s per device used for MFU.

  TPU / GPU: the chip's dense bf16 peak (whatever `dtype`: MFU is quoted against it). An
  accelerator the table does not know raises `ConfigError` naming `train.peak_flops_per_device`.
  CPU: the highest measured matmul rate of the dtype: JAX's and numpy's for float32; for bf16
  JAX's bf16 -> bf16 and bf16 -> float32 products (the second is the one the steps use).
  """
  device = jax.devices()[0] if device is None else device
  if device.platform != "cpu":
    chip = chip_of_device_kind(device.device_kind)
    if chip is None:
      raise ConfigError("train.peak_flops_per_device",
                        f"no peak FLOP/s known for device kind '{device.device_kind}'; set it "
                        "to the chip's dense bf16 peak (e.g. 989e12 for an H100)")
    return chip.peak_bf16_flops
  peak = jax_matmul_flops(dtype=dtype)
  if dtype == "float32":
    peak = max(peak, numpy_matmul_flops(dtype=dtype))
  else:  # the bf16 x bf16 -> float32 product mmscale's low-precision steps use on CPU
    peak = max(peak, jax_matmul_flops(dtype=dtype, accumulate="float32"))
  return peak
