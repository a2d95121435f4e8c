"""bench/hlo_copies.py counts the layout copies XLA schedules as ops of their own, not the ones
inside fusions, with the bytes each writes."""

import jax
import jax.numpy as jnp

from conftest import load_bench_module


def _count_copies():
  return load_bench_module("hlo_copies").count_copies


def test_a_transposed_result_is_one_copy_and_a_fused_one_is_none():
  count_copies = _count_copies()
  x = jnp.ones((64, 32), jnp.float32)
  transposed = jax.jit(lambda x: x.T).lower(x).compile().as_text()
  assert count_copies(transposed) == (1, 64 * 32 * 4)
  fused = jax.jit(lambda x: jnp.exp(x) * 2).lower(x).compile().as_text()
  assert count_copies(fused) == (0, 0)
  text = """HloModule m

%fused_computation.1 (p: f32[4,8]) -> f32[8,4] {
  %p = f32[4,8]{1,0} parameter(0)
  ROOT %transpose.1 = f32[8,4]{1,0} transpose(%p), dimensions={1,0}
}

ENTRY %main (a: f32[4,8]) -> f32[8,4] {
  %a = f32[4,8]{1,0} parameter(0)
  ROOT %copy_fusion = bf16[8,4]{1,0} fusion(%a), kind=kLoop, calls=%fused_computation.1
}
"""
  assert count_copies(text) == (1, 8 * 4 * 2)  # the top-level fusion, not its body
