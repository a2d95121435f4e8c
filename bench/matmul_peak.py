"""Measures the machine's matmul peak: fp32 and bf16, with JAX (XLA) and with numpy's BLAS.

bf16 twice: bf16 x bf16 -> bf16 (`jax_bfloat16`) and bf16 x bf16 -> float32 cast back to bf16
(`jax_bfloat16_acc32`, the product mmscale's bf16 step uses on CPU; XLA runs it with the CPU's
bf16 dot instructions where there are any).

On CPU, MFU in mmscale is reported against the measured peak of the step's dtype: the higher of
the two fp32 figures for float32 (so a slow XLA CPU kernel cannot flatter our utilisation), the
higher of the two JAX bf16 figures for bfloat16.
Usage: `python bench/matmul_peak.py [--sizes=512,1024,2048]`.
"""

from __future__ import annotations

import json

import jax
from absl import flags

from mmscale import cli_flags
from mmscale.train import peak


def define_flags(fv: flags.FlagValues) -> None:
  """Flags on `fv`, a holder of this benchmark's own (mmscale/cli_flags.py)."""
  flags.DEFINE_string("sizes", "512,1024,2048", None, flag_values=fv)
  flags.DEFINE_string("json", "", "also write the figures to this file", flag_values=fv)


def main(argv: list[str]) -> None:
  """argv = [program, *flags] (module docstring)."""
  args, _ = cli_flags.parse(define_flags, argv, doc=__doc__)
  sizes = [int(s) for s in args.sizes.split(",")]
  rows = {}
  for dtype in ("float32", "bfloat16"):
    rows[f"jax_{dtype}"] = max(peak.jax_matmul_flops(n, dtype) for n in sizes)
  # bf16 x bf16 -> float32, cast back: the product of mmscale's bf16 steps on CPU
  rows["jax_bfloat16_acc32"] = max(peak.jax_matmul_flops(n, "bfloat16", accumulate="float32")
                                   for n in sizes)
  rows["numpy_float32"] = max(peak.numpy_matmul_flops(n, "float32") for n in sizes)  # no bf16 BLAS
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {jax.device_count()} device(s)")
  for name, flops in rows.items():
    print(f"{name:<20} {flops / 1e9:9.1f} GFLOP/s")
  fp32_peak = max(rows["jax_float32"], rows.get("numpy_float32", 0.0))
  bf16_peak = max(rows["jax_bfloat16"], rows["jax_bfloat16_acc32"])
  print(f"peaks used for MFU: float32 {fp32_peak / 1e9:.1f}, bfloat16 {bf16_peak / 1e9:.1f} GFLOP/s")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({**rows, "fp32_peak": fp32_peak, "bf16_peak": bf16_peak}, f, indent=2)


if __name__ == "__main__":
  cli_flags.run(main)
