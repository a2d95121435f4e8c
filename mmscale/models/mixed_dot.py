"""Products of low-precision operands accumulated in float32, on every backend.

Two products (operands of two dtypes are promoted first; float32 ones take the plain product):
- `einsum_float32(spec, a, b)`: result in float32, for attention scores, the loss's logits and
  the output-matrix gradient (softmax and cross-entropy lose too much in bf16);
- `einsum_accumulated(spec, a, b)`: result in the operands' dtype, for the products whose output
  feeds more bf16 compute (attention's probs . v, the loss's gradient into the hidden states).

On TPU and GPU the MXU / tensor cores multiply bf16 and accumulate in float32 natively:
`einsum_float32` is `preferred_element_type=float32`, `einsum_accumulated` the plain bf16 product.

On CPU XLA runs a bf16 x bf16 -> float32 product through its YNNPACK dot fusion, which uses the
CPU's bf16 dot-product instructions (`avx512_bf16`'s `vdpbf16ps`): on such a CPU it reaches about
twice the float32 matmul rate, while a bf16 x bf16 -> bf16 product and any product with a float32
operand run at the float32 rate (`bench/matmul_peak.py` measures all three, docs/performance.md).
So on CPU both products are bf16 x bf16 -> float32 (then cast for `einsum_accumulated`), and their
gradients too: a custom VJP casts the incoming gradient to the operands' dtype, as mixed-precision
training does for the backward products (torch autocast, flash attention's bf16 dS), instead of
autodiff's float32 x (converted) float32 products.

The choice is made per lowering platform (`jax.lax.platform_dependent`), not by the host's
default backend, so a step compiled on a CPU host for a TPU slice keeps the accelerator products.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _operands_and_result(spec: str) -> tuple[str, str, str]:
  inputs, result = spec.replace(" ", "").split("->")
  a, b = inputs.split(",")
  return a, b, result


def _has_product_gradient(spec: str) -> bool:
  """True when each operand's gradient is itself one einsum of the other operand and the result
  gradient: every index of an operand appears in the other operand or in the result, once."""
  a, b, result = _operands_and_result(spec)
  if "." in spec or any(len(set(s)) != len(s) for s in (a, b, result)):
    return False
  return set(a) <= set(b) | set(result) and set(b) <= set(a) | set(result)


def accumulate_in_float32(spec: str, a: jax.Array, b: jax.Array, out_dtype) -> jax.Array:
  """einsum(spec, a, b) accumulated in float32, cast to out_dtype (what every CPU product here
  computes, on operands already in one dtype)."""
  return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32).astype(out_dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 3))
def _cpu_product(spec: str, a: jax.Array, b: jax.Array, out_dtype) -> jax.Array:
  return accumulate_in_float32(spec, a, b, out_dtype)


def _cpu_product_fwd(spec, a, b, out_dtype):
  return accumulate_in_float32(spec, a, b, out_dtype), (a, b)


def _cpu_product_bwd(spec, out_dtype, residuals, grad):
  """grad float[result] -> (d a, d b), each a low-precision product accumulated in float32."""
  a, b = residuals
  a_idx, b_idx, result_idx = _operands_and_result(spec)
  grad = grad.astype(a.dtype)
  d_a = accumulate_in_float32(f"{result_idx},{b_idx}->{a_idx}", grad, b, a.dtype)
  d_b = accumulate_in_float32(f"{a_idx},{result_idx}->{b_idx}", a, grad, b.dtype)
  return d_a, d_b


_cpu_product.defvjp(_cpu_product_fwd, _cpu_product_bwd)


def _cpu(spec: str, a: jax.Array, b: jax.Array, out_dtype) -> jax.Array:
  if _has_product_gradient(spec):
    return _cpu_product(spec, a, b, out_dtype)
  return accumulate_in_float32(spec, a, b, out_dtype)  # autodiff's gradient


def _common(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
  """a and b in their promoted dtype (a float32 operand makes both float32)."""
  dtype = jnp.promote_types(a.dtype, b.dtype)
  return a.astype(dtype), b.astype(dtype)


def einsum_float32(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
  """jnp.einsum(spec, a, b) accumulated and returned in float32."""
  a, b = _common(a, b)
  if a.dtype == jnp.float32:
    return jnp.einsum(spec, a, b)
  return jax.lax.platform_dependent(
      a, b, cpu=lambda x, y: _cpu(spec, x, y, jnp.float32),
      default=lambda x, y: jnp.einsum(spec, x, y, preferred_element_type=jnp.float32))


def einsum_accumulated(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
  """jnp.einsum(spec, a, b) in the operands' (promoted) dtype, accumulated in float32."""
  a, b = _common(a, b)
  if a.dtype == jnp.float32:
    return jnp.einsum(spec, a, b)
  return jax.lax.platform_dependent(
      a, b, cpu=lambda x, y: _cpu(spec, x, y, x.dtype), default=lambda x, y: jnp.einsum(spec, x, y))
