"""The dense layers' product x . kernel, with a weight gradient laid out for XLA's CPU backend.

`contract(x, kernel, num_in)`: x float[..., *in_dims] . kernel float[*in_dims, *out_dims] ->
float[..., *out_dims], contracting x's trailing `num_in` axes with the kernel's leading ones.

Why a custom gradient on CPU: autodiff computes the weight gradient as dot(x, dy) contracting
the token axes, float[*in_dims, *out_dims]. XLA's CPU layout assignment gives that dot a
transposed copy of dy (float[out, tokens]) and fuses the copy into the producer of dy, so the
elementwise backward of the activation (SwiGLU's silu' * up, GELU') writes its float[tokens, out]
result column by column: in the profile of the benchmark's train step these four fusions took a
quarter of the step (docs/performance.md). Computed instead as dot(dy, x) = float[*out_dims,
*in_dims] and then transposed, the transposed copy is the kernel-sized result (out x in), not
the token-sized activation gradient, and the step is about a quarter faster.

In bfloat16 the three CPU products multiply bf16 and accumulate in float32
(`preferred_element_type`, then cast back): XLA's CPU dot fusion runs that product with the CPU's
bf16 dot instructions where it has them, about twice its float32 rate, while a bf16 -> bf16
product runs at the float32 rate (mmscale/models/mixed_dot.py).

Only when tracing for CPU (the platform of the mesh being traced for): on TPU and GPU the
plain dot is kept, so that remat policies which save dot outputs (`dots_saveable`) see it; on
CPU those policies do not see these products (a custom VJP hides them), which only changes
what a CPU run recomputes.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from mmscale.models.attention import current_platform


def _dims(x_ndim: int, num_in: int):
  """dot_general dimension numbers of x . kernel (no batch dims)."""
  return ((tuple(range(x_ndim - num_in, x_ndim)), tuple(range(num_in))), ((), ()))


def _plain(x, kernel, num_in: int):
  return jax.lax.dot_general(x, kernel, _dims(x.ndim, num_in))


def _accumulated(a, b, dims, out_dtype):
  """dot_general(a, b, dims) accumulated in float32, cast to out_dtype (both no-ops in float32)."""
  return jax.lax.dot_general(a, b, dims, preferred_element_type=jnp.float32).astype(out_dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _cpu_contract(x, kernel, num_in: int):
  return _accumulated(x, kernel, _dims(x.ndim, num_in), x.dtype)


def _cpu_fwd(x, kernel, num_in: int):
  return _cpu_contract(x, kernel, num_in), (x, kernel)


def _cpu_bwd(num_in: int, residuals, dy):
  """dy float[..., *out] -> (dx float[..., *in], d kernel float[*in, *out])."""
  x, kernel = residuals
  num_out = kernel.ndim - num_in
  lead = x.ndim - num_in  # token axes, shared by x and dy
  # dx = dy . kernel^T: contract dy's out axes with the kernel's trailing out axes
  dy = dy.astype(x.dtype)
  dx = _accumulated(dy, kernel, ((tuple(range(lead, lead + num_out)),
                                  tuple(range(num_in, kernel.ndim))), ((), ())), x.dtype)
  # d kernel^T = dy^T . x over the tokens, float[out, in] as 2-D products (flattened, so that
  # XLA does not fold the transpose back into the dot), then the kernel-sized transpose
  tokens = math.prod(x.shape[:lead])
  d_kernel_t = _accumulated(dy.reshape(tokens, -1), x.reshape(tokens, -1),
                            (((0,), (0,)), ((), ())), kernel.dtype)  # [to] . [ti] -> [oi]
  return dx, d_kernel_t.T.reshape(kernel.shape)


_cpu_contract.defvjp(_cpu_fwd, _cpu_bwd)


def contract(x: jax.Array, kernel: jax.Array, num_in: int) -> jax.Array:
  """x float[..., *in] . kernel float[*in, *out] -> float[..., *out] (see the module docstring)."""
  if current_platform() == "cpu":
    return _cpu_contract(x, kernel, num_in)
  return _plain(x, kernel, num_in)
