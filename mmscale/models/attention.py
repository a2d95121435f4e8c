"""Attention kernels behind one call: the XLA reference, splash (Pallas, TPU) and cuDNN (GPU).

`attend(q, k, v, segment_ids, mask_ar, kind=..., kernel=...)` computes grouped-query attention

  q float[B, T, H, Dh], k/v float[B, T, KV, Dh] -> float[B, T, H, Dh]   (KV divides H)

under one of three mask rules, named statically so that a kernel can pick its cheapest mask:

  bidirectional  i attends j iff segment_ids[i] == segment_ids[j]            (the ViT)
  causal         ... and j <= i                                             (decoder.causal_only)
  prefix         ... and cumsum(mask_ar)[j] <= cumsum(mask_ar)[i]           (contracts §4)

`prefix` is the general rule: with mask_ar all 1 it is causal; a run of zeros after a 1 (an image
block, a prompt prefix) is a bidirectional block. Every kernel computes every rule exactly:

  xla     the reference: float32 scores float[B, H, T, T] and a bool[B, T, T] mask, any backend.
  splash  Pallas splash attention (TPU), inside `shard_map` over the mesh's batch and head axes.
          causal/bidirectional use splash's static masks plus the packing segment ids (no T x T
          array at all); prefix gives splash a per-example dynamic mask bool[T, T] (1 byte per
          pair, shared by all heads; fully masked blocks are still skipped). Off TPU it runs in
          Pallas interpret mode: exact, slow, for tests.
  cudnn   cuDNN flash attention through `jax.nn.dot_product_attention(implementation='cudnn')`
          (GPU, bfloat16/float16), the mask passed as bool[B, 1, T, T].
  auto    splash on TPU, cudnn on GPU with a 16-bit compute dtype, xla otherwise.

The platform is the one of the mesh being traced for (`jax.sharding.get_abstract_mesh()`), so
`python -m mmscale.compile` on a CPU machine targeting a TPU slice compiles the real kernel.

Gemma 2 / 3 add terms to the scores (`ScoreTerms`): a query scale other than Dh^-0.5, tanh
soft-capping of the scores, and a sliding window of key slots on the layers flagged local. The
reference computes them (a scale, a tanh, and one more mask term); the fused kernels do not
take them yet (splash has `attn_logits_soft_cap` and `LocalMask`, cuDNN a local window size),
so `auto` picks the reference for a model that has them and `splash` / `cudnn` refuse it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax.sharding import PartitionSpec as P

from mmscale.errors import ConfigError
from mmscale.models import softmax_attend_cpu
from mmscale.models.mixed_dot import einsum_accumulated, einsum_float32
from mmscale.registry import Registry

ATTENTION_KERNELS = Registry("attention kernel")
MASK_KINDS = ("bidirectional", "causal", "prefix")
KERNEL_NAMES = ("auto", "xla", "splash", "cudnn")
HALF_DTYPES = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
SPLASH_LANES = 128  # splash's block sizes are multiples of the TPU lane width


def make_attention_mask(segment_ids: jax.Array, mask_ar: jax.Array) -> jax.Array:
  """bool[B, T, T]: query i may attend key j (the prefix rule; contracts §4 cumsum rule).

  i attends j iff segment_ids[i] == segment_ids[j] and cumsum(mask_ar)[j] <= cumsum(mask_ar)[i].
  With mask_ar all 1 this is causal; a run of zeros after a 1 forms a bidirectional block (image
  tokens, a VQA prefix). Padding (segment 0) only sees padding, so no row is empty (no NaN) and
  real tokens never see padding.
  """
  cum = jnp.cumsum(mask_ar.astype(jnp.int32), axis=-1)
  same_segment = segment_ids[:, :, None] == segment_ids[:, None, :]
  return same_segment & (cum[:, None, :] <= cum[:, :, None])


def mask_for_kind(segment_ids: jax.Array, mask_ar: jax.Array | None, kind: str) -> jax.Array:
  """bool[B, T, T] of a mask rule (`MASK_KINDS`); mask_ar is ignored unless kind is prefix."""
  if kind == "bidirectional":
    mask_ar = jnp.zeros_like(segment_ids)
  elif kind == "causal":
    mask_ar = jnp.ones_like(segment_ids)
  return make_attention_mask(segment_ids, mask_ar)


@dataclasses.dataclass(frozen=True)
class ScoreTerms:
  """Gemma 2 / 3's additions to the scores; the defaults add nothing.

  scale: scores = q.k * scale (None: Dh^-0.5; Gemma: query_pre_attn_scalar^-0.5).
  logit_softcap: > 0: scores -> c * tanh(scores / c) before the mask (Gemma 2: 50).
  sliding_window: > 0: a query sees itself and the window - 1 previous key slots
    (`sliding_window_mask`), on a layer whose `local` flag is true.
  local: bool[] (may be traced: a per-layer value under nn.scan) or None (= local).
  """
  scale: float | None = None
  logit_softcap: float = 0.0
  sliding_window: int = 0
  local: Any = None

  @property
  def active(self) -> bool:
    return self.scale is not None or bool(self.logit_softcap) or bool(self.sliding_window)

  def mask(self, mask: jax.Array, query_offset=0) -> jax.Array:
    """bool[B, T, S] -> the same with the sliding window applied (query slot = offset + i)."""
    if not self.sliding_window:
      return mask
    return mask & sliding_window_mask(mask.shape[1], mask.shape[2], self.sliding_window,
                                      query_offset, self.local)


NO_TERMS = ScoreTerms()


def sliding_window_mask(num_queries: int, num_keys: int, window: int, query_offset=0,
                        active=None) -> jax.Array:
  """bool[T, S]: key slot j is within `window` of query slot query_offset + i, i.e.
  (query_offset + i) - j < window (the query itself and window - 1 earlier slots; later slots
  are left to the causal / block mask). `active` (bool[], may be traced) False lets every key
  through (a global layer). Slots, not RoPE positions: within one packed example and in a
  left-padded decode cache they differ by a constant, and Hugging Face's sliding-window layers
  count slots too.
  """
  distance = (query_offset + jnp.arange(num_queries))[:, None] - jnp.arange(num_keys)[None, :]
  within = distance < window
  return within if active is None else within | ~active


def masked_softmax_attend(q, k, v, mask, scale=None, logit_softcap=0.0):
  """Grouped-query attention core of the reference.

  q float[B, T, KV, G, Dh], k/v float[B, S, KV, Dh], mask bool[B, T, S] -> float[B, T, KV, G, Dh].
  Scores are q.k * scale (None: Dh^-0.5), soft-capped to c * tanh(scores / c) when
  logit_softcap = c > 0. Scores and softmax in float32; masked logits get a large finite
  negative (not -inf) so a fully masked row stays finite.

  The products run head-major: q as float[B, KV, G x T, Dh] (a group's queries stacked) and k/v
  as float[B, KV, S, Dh], so both are plain batched matrix products over (B, KV) with no size-1
  axis between them. With token-major operands XLA's CPU backend swapped the product's operands
  and copied the float32 scores float[B, KV, G, T, S] into another layout; the small transposes
  of q, k, v and the output cost less (the CPU train step's layout copies halved and the step
  ran about 14% faster, docs/performance.md). On TPU and GPU layout assignment picks the
  layouts either way.

  When tracing for CPU in bf16 / fp16 (without soft-capping) the core is
  `softmax_attend_cpu.softmax_attend`: the same values with flash attention's backward pass and
  bf16 products; in the benchmark's bf16 train step the decoder's attention core took 39% less
  op time than with this one (docs/performance.md). In float32 it was no faster, so float32
  keeps this one.
  """
  b, t, kv_heads, groups, head_dim = q.shape
  scale = head_dim ** -0.5 if scale is None else scale
  if (current_platform() == "cpu" and not logit_softcap
      and jnp.result_type(q.dtype, k.dtype, v.dtype) in HALF_DTYPES):
    return softmax_attend_cpu.softmax_attend(q, k, v, mask, scale)
  q_heads = q.transpose(0, 2, 3, 1, 4).reshape(b, kv_heads, groups * t, head_dim)
  k_heads, v_heads = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [B, KV, S, Dh]
  scores = einsum_float32("bkqd,bksd->bkqs", q_heads, k_heads) * scale  # float32[B, KV, GT, S]
  if logit_softcap:
    scores = logit_softcap * jnp.tanh(scores / logit_softcap)
  # an additive bias (0 or a large negative), shared by the heads: its gradient is the identity,
  # so the backward pass needs no select over float32[B, KV, G, T, S]
  bias = jnp.where(mask, 0.0, jnp.finfo(jnp.float32).min)  # float32[B, T, S]
  scores = scores.reshape(b, kv_heads, groups, t, -1) + bias[:, None, None, :, :]
  probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype).reshape(b, kv_heads, groups * t, -1)
  out = einsum_accumulated("bkqs,bksd->bkqd", probs, v_heads)  # [B, KV, G x T, Dh]
  return out.reshape(b, kv_heads, groups, t, head_dim).transpose(0, 3, 1, 2, 4)


def attend_with_mask(q, k, v, mask, terms: ScoreTerms = NO_TERMS):
  """q float[B, T, H, Dh], k/v float[B, S, KV, Dh], mask bool[B, T, S] -> float[B, T, H, Dh].
  `terms.scale` / `terms.logit_softcap` apply; the mask already holds any window."""
  b, t, h, dh = q.shape
  kvh = k.shape[2]
  out = masked_softmax_attend(q.reshape(b, t, kvh, h // kvh, dh), k, v, mask,
                              scale=terms.scale, logit_softcap=terms.logit_softcap)
  return out.reshape(b, t, h, dh)


def current_platform() -> str:
  """'tpu' | 'gpu' | 'cpu': the platform of the mesh being traced for, else the default backend.

  Under `jax.set_mesh(mesh)` the abstract mesh carries its devices' platform, which is the
  target's (a TPU topology when compiling for a slice from a CPU machine), not this process's.
  """
  mesh = jax.sharding.get_abstract_mesh()
  if not mesh.empty:
    platform = mesh.abstract_device.platform
  else:
    platform = jax.default_backend()
  return "gpu" if platform in ("cuda", "rocm") else platform


def resolve_kernel(name: str, platform: str, dtype) -> str:
  """The concrete kernel `name` means on `platform` for compute `dtype` ('auto' resolved)."""
  if name != "auto":
    return name
  if platform == "tpu":
    return "splash"
  if platform == "gpu" and jnp.dtype(dtype) in HALF_DTYPES:
    return "cudnn"
  return "xla"


def attend(q, k, v, segment_ids, mask_ar, *, kind: str, kernel: str = "xla",
           terms: ScoreTerms = NO_TERMS):
  """Attention by the named kernel (module docstring); float[B, T, H, Dh] -> same.

  segment_ids int[B, T] (1 for an unpacked row); mask_ar int[B, T], read only by kind 'prefix'.
  `terms` (Gemma's score terms) are computed by the reference only: with them `auto` is 'xla'.
  """
  if kind not in MASK_KINDS:
    raise ValueError(f"mask kind {kind!r} is not one of {MASK_KINDS}")
  platform = current_platform()
  name = resolve_kernel(kernel, platform, q.dtype)
  if mask_ar is None:
    mask_ar = jnp.ones_like(segment_ids)
  if terms.active:
    if name != "xla" and kernel != "auto":
      raise ConfigError("model.attention", f"{name!r} does not compute a query scale, "
                        "soft-capping or a sliding window yet (the Gemma settings); use 'auto' "
                        "or 'xla'")
    return xla_attention(q, k, v, segment_ids, mask_ar, kind=kind, platform=platform,
                         terms=terms)
  return ATTENTION_KERNELS.get(name)(q, k, v, segment_ids, mask_ar, kind=kind, platform=platform)


@ATTENTION_KERNELS.register("xla")
def xla_attention(q, k, v, segment_ids, mask_ar, *, kind, platform, terms=NO_TERMS):
  """The reference: the full mask and float32 scores, any backend; every `ScoreTerms` term."""
  del platform
  mask = terms.mask(mask_for_kind(segment_ids, mask_ar, kind))
  return attend_with_mask(q, k, v, mask, terms)


@ATTENTION_KERNELS.register("cudnn")
def cudnn_attention(q, k, v, segment_ids, mask_ar, *, kind, platform, implementation="cudnn"):
  """cuDNN flash attention; the mask rule as bool[B, 1, T, T] (`implementation` = 'xla' runs the
  same call through XLA, which is how the argument mapping is checked off GPU)."""
  if implementation == "cudnn":
    if platform != "gpu":
      raise ConfigError("model.attention", f"'cudnn' needs a GPU; this run's platform is "
                        f"{platform!r} (use 'auto' or 'xla')")
    if jnp.dtype(q.dtype) not in HALF_DTYPES:
      raise ConfigError("model.attention", f"'cudnn' computes in bfloat16 or float16, not "
                        f"{jnp.dtype(q.dtype).name} (set model.dtype=bfloat16, or use 'auto')")
  mask = mask_for_kind(segment_ids, mask_ar, kind)[:, None]
  return jax.nn.dot_product_attention(q, k.astype(q.dtype), v.astype(q.dtype), mask=mask,
                                      implementation=implementation)


@ATTENTION_KERNELS.register("splash")
def splash_attention(q, k, v, segment_ids, mask_ar, *, kind, platform):
  """Splash attention per device inside `shard_map`: batch over the axes `activation_batch`
  maps to, heads over those of `activation_heads`; the sequence is whole on each device."""
  local = functools.partial(_splash_local, kind=kind, interpret=platform != "tpu")
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return local(q, k, v, segment_ids, mask_ar)
  batch, _, heads, _ = nn.logical_to_mesh_axes(
      ("activation_batch", "activation_length", "activation_heads", "activation_kv"))
  # An axis that does not divide (model.init traces one row) is whole on every device instead;
  # q and k/v heads split together or not at all, so each device keeps whole GQA groups.
  batch = batch if q.shape[0] % _axes_size(mesh, batch) == 0 else None
  if q.shape[2] % _axes_size(mesh, heads) or k.shape[2] % _axes_size(mesh, heads):
    heads = None
  qkv = P(batch, None, heads, None)
  rows = P(batch, None)
  return jax.shard_map(local, in_specs=(qkv, qkv, qkv, rows, rows), out_specs=qkv,
                       check_vma=False)(q, k, v, segment_ids, mask_ar)


def _axes_size(mesh, axes) -> int:
  """Devices along a PartitionSpec entry (None, one axis name or a tuple of them)."""
  if axes is None:
    return 1
  names = (axes,) if isinstance(axes, str) else axes
  return int(np.prod([mesh.shape[name] for name in names]))


def splash_block(length: int) -> int:
  """The splash block size for a (padded) sequence: the largest of 512, 256, 128 dividing it."""
  return next(b for b in (512, 256, SPLASH_LANES) if length % b == 0)


def _splash_local(q, k, v, segment_ids, mask_ar, *, kind, interpret):
  """One device's splash attention; q float[b, T, H, Dh], k/v float[b, T, KV, Dh].

  T is padded to a multiple of 128 with segment id -1 (pads attend only pads, so no row is
  empty); q is pre-scaled by Dh^-0.5 (splash does not scale); K/V take q's compute dtype.
  """
  from jax.experimental.pallas.ops.tpu import splash_attention as sa  # TPU kernels: lazy import

  b, t, h, dh = q.shape
  kvh = k.shape[2]
  pad = -t % SPLASH_LANES
  tp = t + pad
  widths = ((0, 0), (0, pad), (0, 0), (0, 0))
  q = jnp.pad(q * jnp.asarray(dh ** -0.5, q.dtype), widths).transpose(0, 2, 1, 3)
  k = jnp.pad(k.astype(q.dtype), widths).transpose(0, 2, 1, 3)
  v = jnp.pad(v.astype(q.dtype), widths).transpose(0, 2, 1, 3)
  segment_ids = jnp.pad(segment_ids, ((0, 0), (0, pad)), constant_values=-1)
  mask_ar = jnp.pad(mask_ar, ((0, 0), (0, pad)), constant_values=1)
  block = splash_block(tp)
  sizes = sa.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block,
                        block_q_dkv=block, block_kv_dkv=block, block_kv_dkv_compute=block,
                        block_q_dq=block, block_kv_dq=block)
  make = functools.partial(sa.make_splash_mha, block_sizes=sizes, head_shards=1, q_seq_shards=1,
                           interpret=interpret)

  if kind == "prefix":
    def one_row(q_r, k_r, v_r, seg_r, ar_r):  # [H, Tp, Dh], [KV, Tp, Dh] x2, int[Tp] x2
      mask = make_attention_mask(seg_r[None], ar_r[None])  # bool[1, Tp, Tp], shared by heads
      kernel = _static_flag(make(mask))
      k_h = jnp.repeat(k_r, h // kvh, axis=0)
      v_h = jnp.repeat(v_r, h // kvh, axis=0)
      return jax.vmap(lambda qh, kh, vh: kernel(qh[None], kh[None], vh[None])[0])(q_r, k_h, v_h)
    out = jax.vmap(one_row)(q, k, v, segment_ids, mask_ar)
  else:
    head_mask = (sa.CausalMask((tp, tp)) if kind == "causal" else sa.FullMask((tp, tp)))
    kernel = make(sa.MultiHeadMask([head_mask] * h))
    ids = sa.SegmentIds(q=segment_ids, kv=segment_ids)
    out = jax.vmap(lambda q_r, k_r, v_r, ids_r: kernel(q_r, k_r, v_r, segment_ids=ids_r))(
        q, k, v, ids)
  return out.transpose(0, 2, 1, 3)[:, :t]


def _static_flag(kernel):
  """Splash keeps `is_dynamic_mask` as an array leaf of its mask infos and branches on it in
  Python, which fails under jit; the flag only names a profiler scope, so drop it (None)."""
  for name in ("fwd_mask_info", "dq_mask_info", "dkv_mask_info"):
    info = getattr(kernel, name)
    if info is not None:
      setattr(kernel, name, info._replace(is_dynamic_mask=None))
  return kernel

