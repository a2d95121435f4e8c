"""The reference attention core with a hand-written gradient, for XLA's CPU backend.

`softmax_attend(q, k, v, mask, scale)`: q float[B, T, KV, G, Dh], k/v float[B, S, KV, Dh],
mask bool[B, T, S] -> float[B, T, KV, G, Dh]; the same values as autodiff of
`attention.masked_softmax_attend` (float32 scores and softmax, probs in v's dtype), with the
backward pass of flash attention instead of autodiff's:

  forward   s = (scale q) . k  (float32)   P = softmax(masked s)   o = P . v
  backward  dP = do . v   delta = rowsum(do * o)   dS = P (dP - delta)
            dq = scale dS . k   dk = dS . (scale q)   dv = P . do

rowsum(dP * P) = rowsum(do * o) (o = P . v), so the row term of the softmax gradient is a
reduction over Dh instead of over the S keys, and the backward reads the saved probs in v's dtype
(bf16 in a bf16 run) instead of recomputing autodiff's chain over float32[B, KV, G, T, S].

Why on CPU: in the benchmark's bf16 train step autodiff's version was nearly a quarter of the
step's op time. XLA's CPU backend fused its softmax backward (a reduction over S and the
elementwise products around it) into the YNNPACK dot fusion, which ran it far below the rate
of the products; and the head-major transposes of q and k (RoPE's outputs) reached the products
with a transposed layout, which XLA's CPU backend multiplies in float32 after converting the
operands. Here the products take token-major operands (no transposes before them) and the
backward pass has no reduction over S: the core took 39% less op time in that step
(docs/performance.md). Each product is a low-precision product accumulated in float32
(mmscale/models/mixed_dot.py), which XLA's CPU backend runs with the CPU's bf16 dot
instructions where it has them.

TPU and GPU keep autodiff of the reference (their remat policies see its dots), chosen per
traced platform by `attention.masked_softmax_attend`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mmscale.models.mixed_dot import accumulate_in_float32

F32 = jnp.float32


def _forward(q, k, v, mask):
  """(o float[B, T, KV, G, Dh] in v's dtype, probs float[B, KV, G, T, S] in v's dtype);
  q already scaled."""
  scores = accumulate_in_float32("btkgd,bskd->bkgts", q, k, F32)
  # a large finite negative, not -inf: a fully masked row stays finite (padding sees padding)
  scores = jnp.where(mask[:, None, None], scores, jnp.finfo(F32).min)
  exp = jnp.exp(scores - jnp.max(scores, axis=-1, keepdims=True))
  probs = (exp / jnp.sum(exp, axis=-1, keepdims=True)).astype(v.dtype)
  return accumulate_in_float32("bkgts,bskd->btkgd", probs, v, v.dtype), probs


@jax.custom_vjp
def _attend_scaled(q, k, v, mask):
  return _forward(q, k, v, mask)[0]


def _attend_scaled_fwd(q, k, v, mask):
  out, probs = _forward(q, k, v, mask)
  return out, (q, k, v, probs, out)


def _attend_scaled_bwd(residuals, d_out):
  """d_out float[B, T, KV, G, Dh] -> (dq, dk, dv, None for the mask)."""
  q, k, v, probs, out = residuals
  d_out = d_out.astype(v.dtype)
  d_probs = accumulate_in_float32("btkgd,bskd->bkgts", d_out, v, F32)
  delta = jnp.sum(d_out.astype(F32) * out.astype(F32), axis=-1)  # [B, T, KV, G]
  delta = delta.transpose(0, 2, 3, 1)[..., None]  # [B, KV, G, T, 1]
  d_scores = (probs.astype(F32) * (d_probs - delta)).astype(v.dtype)
  dq = accumulate_in_float32("bkgts,bskd->btkgd", d_scores, k, q.dtype)
  dk = accumulate_in_float32("bkgts,btkgd->bskd", d_scores, q, k.dtype)
  dv = accumulate_in_float32("bkgts,btkgd->bskd", probs, d_out, v.dtype)
  return dq, dk, dv, None


_attend_scaled.defvjp(_attend_scaled_fwd, _attend_scaled_bwd)


def softmax_attend(q, k, v, mask, scale: float):
  """See the module docstring. Operands of two dtypes are promoted first; q is scaled in
  float32 and cast back (exact for Dh = 64 and other powers of 4 in bf16)."""
  dtype = jnp.result_type(q.dtype, k.dtype, v.dtype)
  q_scaled = (q.astype(F32) * scale).astype(dtype)
  return _attend_scaled(q_scaled, k.astype(dtype), v.astype(dtype), mask)
