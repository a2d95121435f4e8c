"""Products with float32 accumulation and output, for any operand dtype, on every backend.

Attention scores, the loss's logits and the output-matrix gradient are wanted in float32 even
when the step computes in bfloat16 (softmax and cross-entropy lose too much in bf16).
On TPU and GPU that is `preferred_element_type=float32`: the MXU / tensor cores multiply bf16 and
accumulate in float32 natively. XLA's CPU runtime has no such kernel ("Unsupported element type
for DotThunk::Execute: BF16 x BF16 = F32"), so on CPU the operands are cast to float32 first,
which gives the same values (a bf16 -> f32 cast is exact) at the CPU's float32 matmul rate.

The choice is made per lowering platform (`jax.lax.platform_dependent`), not by the host's
default backend, so a step compiled on a CPU host for a TPU slice keeps the bf16 x bf16 -> f32
product.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def einsum_float32(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
  """jnp.einsum(spec, a, b) accumulated and returned in float32, whatever a's and b's dtype."""
  if a.dtype == jnp.float32 and b.dtype == jnp.float32:
    return jnp.einsum(spec, a, b)

  def accelerator(x, y):
    return jnp.einsum(spec, x, y, preferred_element_type=jnp.float32)

  def cpu(x, y):
    return jnp.einsum(spec, x.astype(jnp.float32), y.astype(jnp.float32))

  return jax.lax.platform_dependent(a, b, cpu=cpu, default=accelerator)
