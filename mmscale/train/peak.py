"""Measured matmul peak of a device: the denominator of model FLOPs utilisation (MFU).

We measure rather than quote a datasheet, because on CPU the achievable peak depends on the BLAS,
the core count and the clock; on TPU/GPU it is close to the datasheet figure anyway.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np


def _best_seconds(fn, repeats: int) -> float:
  fn()  # warm up / compile
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return best


def jax_matmul_flops(n: int = 1024, dtype: str = "float32", repeats: int = 5, chain: int = 4) -> float:
  """FLOP/s of a chain of n x n matmuls on the default device (one device)."""
  a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype=dtype)
  b = jnp.asarray(np.random.default_rng(1).standard_normal((n, n)), dtype=dtype) / np.sqrt(n)

  @jax.jit
  def matmuls(x):
    for _ in range(chain):
      x = x @ b
    return x

  seconds = _best_seconds(lambda: matmuls(a).block_until_ready(), repeats)
  return 2 * n ** 3 * chain / seconds


def numpy_matmul_flops(n: int = 1024, dtype: str = "float32", repeats: int = 5) -> float:
  """FLOP/s of numpy's BLAS (the other credible CPU peak)."""
  a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
  b = np.random.default_rng(1).standard_normal((n, n)).astype(dtype)
  return 2 * n ** 3 / _best_seconds(lambda: a @ b, repeats)


def device_peak_flops(dtype: str = "float32") -> float:
  """Peak FLOP/s per device used for MFU: the higher of JAX's and numpy's (numpy on CPU only)."""
  peak = jax_matmul_flops(dtype=dtype)
  if jax.default_backend() == "cpu" and dtype == "float32":
    peak = max(peak, numpy_matmul_flops(dtype=dtype))
  return peak
