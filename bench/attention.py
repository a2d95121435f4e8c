"""The reference attention's forward and backward pass at the train-step benchmark's decoder shape.

Times `jax.vjp` of `models.attention.masked_softmax_attend` (the `xla` kernel's core: float32
scores, the prefix-rule mask as an additive bias, softmax, the value product) for q float[B, T,
H, Dh] and k/v float[B, T, KV, Dh] at B = 16 rows, T = 192 positions, H = 4 heads of Dh = 64 (the
reference config of bench/train_step.py), one compiled call per step. Reported: the median
milliseconds of --steps calls after one warm-up, and GFLOP/s of the four products' 6 matmuls
(2 forward, 4 backward). `--dtype=bfloat16` gives q, k, v and the incoming gradient in bf16 (on CPU
the core is then `models/softmax_attend_cpu.py`). Usage: `python bench/attention.py
[--kv_heads=4] [--dtype=float32] [--steps=30]`; prints one JSON line.
"""

from __future__ import annotations

import json
import statistics
import time

import jax
import jax.numpy as jnp
from absl import flags

from mmscale import cli_flags
from mmscale.errors import UsageError
from mmscale.models.attention import make_attention_mask, masked_softmax_attend

ROWS, LENGTH, HEADS, HEAD_DIM, IMAGE_TOKENS = 16, 192, 4, 64, 64


def define_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_integer("kv_heads", HEADS, "key/value heads (divides 4; < 4 is grouped-query)",
                       flag_values=fv)
  flags.DEFINE_integer("steps", 30, "timed calls (the median is reported)", flag_values=fv)
  flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "dtype of q, k, v and the "
                    "incoming gradient", flag_values=fv)


def attention_call(kv_heads: int, dtype: str = "float32"):
  """(call, args): call(*args) runs the forward and backward pass once and returns the gradients."""
  if kv_heads < 1 or HEADS % kv_heads:
    raise UsageError(f"--kv_heads: expected a divisor of {HEADS}, got {kv_heads}")
  keys = jax.random.split(jax.random.key(0), 4)
  q = jax.random.normal(keys[0], (ROWS, LENGTH, kv_heads, HEADS // kv_heads, HEAD_DIM))
  k = jax.random.normal(keys[1], (ROWS, LENGTH, kv_heads, HEAD_DIM))
  v = jax.random.normal(keys[2], (ROWS, LENGTH, kv_heads, HEAD_DIM))
  out_grad = jax.random.normal(keys[3], q.shape)
  q, k, v, out_grad = (x.astype(dtype) for x in (q, k, v, out_grad))
  # the benchmark's rows: [bos, 64 image tokens] as one bidirectional block, then causal text
  mask_ar = jnp.ones((ROWS, LENGTH), jnp.int32).at[:, 2:1 + IMAGE_TOKENS].set(0)
  mask = make_attention_mask(jnp.ones((ROWS, LENGTH), jnp.int32), mask_ar)

  @jax.jit
  def call(q, k, v, out_grad):
    _, pullback = jax.vjp(lambda q, k, v: masked_softmax_attend(q, k, v, mask), q, k, v)
    return pullback(out_grad)

  return call, (q, k, v, out_grad)


def main(argv: list[str]) -> None:
  args, _ = cli_flags.parse(define_flags, argv, doc=__doc__)
  call, operands = attention_call(args.kv_heads, args.dtype)
  jax.block_until_ready(call(*operands))
  times = []
  for _ in range(args.steps):
    start = time.perf_counter()
    jax.block_until_ready(call(*operands))
    times.append(time.perf_counter() - start)
  seconds = statistics.median(times)
  flops = 6 * 2 * ROWS * HEADS * LENGTH * LENGTH * HEAD_DIM
  print(json.dumps({"kv_heads": args.kv_heads, "dtype": args.dtype, "ms": round(seconds * 1e3, 2),
                    "gflops_per_s": round(flops / seconds / 1e9, 1),
                    "backend": jax.default_backend()}))


if __name__ == "__main__":
  cli_flags.run(main)
