"""Shared building blocks: norms, RoPE, MLPs, grouped-query attention with a KV cache.

Every parameter is created through `nn.with_logical_partitioning` so that sharding is pure
configuration (logical axis rules in `mmscale.parallel`), and activations are pinned with
`nn.with_logical_constraint` (a no-op outside a rules context). `dtype` is the compute dtype,
`param_dtype` the storage dtype (float32 even in bfloat16 runs); norms, RoPE and softmax compute in
float32 because bfloat16 loses too much there.
"""

from typing import Any, Sequence

import math

import jax
import jax.numpy as jnp
from flax import linen as nn

from mmscale.models.attention import (ScoreTerms, attend, attend_with_mask, current_platform,
                                      mask_for_kind)
from mmscale.models.dense_contract import contract
from mmscale.registry import Registry

Dtype = Any

BATCH_LENGTH_EMBED = ("activation_batch", "activation_length", "activation_embed")
BATCH_LENGTH_MLP = ("activation_batch", "activation_length", "activation_mlp")
BATCH_LENGTH_HEADS_KV = ("activation_batch", "activation_length", "activation_heads",
                         "activation_kv")


def dtype_of(name: Any) -> jnp.dtype:
  """'float32' | 'bfloat16' | a dtype -> jnp.dtype (configs hold strings)."""
  return jnp.dtype(name)


def partitioned(init, names: Sequence[str | None]):
  """An initializer whose output carries logical axis names (one per dimension)."""
  return nn.with_logical_partitioning(init, tuple(names))


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
  return nn.with_logical_constraint(x, tuple(names))


def add_in_float32(x: jax.Array, addend: jax.Array, dtype) -> jax.Array:
  """(x + addend) computed in float32, cast to dtype; x float[..., F], addend broadcastable.

  For a bias or a position embedding broadcast over the tokens: its gradient is then a float32
  sum over the tokens. `x + addend.astype(bfloat16)` makes autodiff sum in bf16, which XLA's CPU
  backend runs as a reduce-window, much slower than a float32 sum (in the benchmark's bf16 train
  step the ViT's bias gradients took 53.6 ms per step, docs/performance.md); the float32 sum is
  also the more accurate one. In float32 this is x + addend.
  """
  return (x.astype(jnp.float32) + addend.astype(jnp.float32)).astype(dtype)


class DenseGeneral(nn.Module):
  """x float[..., *in_dims] -> float[..., *features], contracting the trailing `num_in` axes.

  Unlike nn.DenseGeneral, the kernel is created at its full shape (its own fan-in variance
  scaling over all contracted axes): nn.DenseGeneral builds a flat 2-D kernel first and, under a
  mesh, applies the multi-axis logical names to that 2-D array and fails.
  """
  features: tuple[int, ...]
  names: tuple[str | None, ...]  # one per kernel dim: contracted dims, then feature dims
  num_in: int = 1
  use_bias: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  init: Any = None

  @nn.compact
  def __call__(self, x):
    n_in, n_out = self.num_in, len(self.features)
    shape = tuple(x.shape[-n_in:]) + tuple(self.features)
    init = self.init or nn.initializers.variance_scaling(
        1.0, "fan_in", "truncated_normal", in_axis=tuple(range(n_in)),
        out_axis=tuple(range(n_in, n_in + n_out)))
    kernel = self.param("kernel", partitioned(init, self.names), shape, self.param_dtype)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    y = contract(x, kernel, n_in)  # its weight gradient is laid out for CPU there
    if self.use_bias:
      bias = self.param("bias", partitioned(nn.initializers.zeros_init(), self.names[n_in:]),
                        tuple(self.features), self.param_dtype)
      y = add_in_float32(y, bias, self.dtype)
    return y


def dense(features, names, *, axis=-1, use_bias=False, dtype=jnp.float32,
          param_dtype=jnp.float32, init=None, name=None) -> DenseGeneral:
  """A DenseGeneral with logically named kernel (names cover contracted + feature dims).

  axis=-1 contracts the last input axis, axis=(-2, -1) the last two (attention out-projection).
  The bias, if any, is named by the feature dims (the trailing names).
  """
  features = tuple(features) if isinstance(features, (tuple, list)) else (features,)
  num_in = len(axis) if isinstance(axis, (tuple, list)) else 1
  return DenseGeneral(features=features, names=tuple(names), num_in=num_in, use_bias=use_bias,
                      dtype=dtype, param_dtype=param_dtype, init=init, name=name)


class RMSNorm(nn.Module):
  """RMS norm over the last axis: x / rms(x) * scale. float[..., D] -> float[..., D].

  `axis_name` is the logical name of the normalised axis ('kv' for the per-head q/k norms).
  scale_plus_one=True multiplies by (1 + scale) with the scale stored zero-centred (initialised
  to 0), as Gemma's checkpoints store it; the product is taken in float32 before the cast."""
  epsilon: float = 1e-6
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  axis_name: str = "embed"
  scale_plus_one: bool = False

  @nn.compact
  def __call__(self, x):
    init = nn.initializers.zeros_init() if self.scale_plus_one else nn.initializers.ones_init()
    scale = self.param("scale", partitioned(init, (self.axis_name,)), (x.shape[-1],),
                       self.param_dtype)
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.epsilon)
    scale32 = scale.astype(jnp.float32) + (1.0 if self.scale_plus_one else 0.0)
    return (y * scale32).astype(self.dtype)


def layer_norm(dtype, param_dtype, name=None, epsilon: float = 1e-6) -> nn.LayerNorm:
  """nn.LayerNorm (float32 statistics) with logically named scale and bias."""
  return nn.LayerNorm(
      epsilon=epsilon, dtype=dtype, param_dtype=param_dtype, use_fast_variance=False,
      scale_init=partitioned(nn.initializers.ones_init(), ("embed",)),
      bias_init=partitioned(nn.initializers.zeros_init(), ("embed",)), name=name)


# decoder.rope_scaling.type -> f(inverse frequencies float32[Dh/2], scaling dict) -> same shape.
# The pretrained families' variants (Hugging Face `rope_type`): 'none' (plain RoPE), 'linear'
# (position interpolation: every frequency / factor) and 'llama3' (Llama 3.1: long wavelengths /
# factor, short ones kept, a smooth blend between).
ROPE_SCALINGS = Registry("rope scaling")
ROPE_SCALINGS.add("none", lambda inv_freq, s: inv_freq)
ROPE_SCALINGS.add("linear", lambda inv_freq, s: inv_freq / s["factor"])


@ROPE_SCALINGS.register("llama3")
def _llama3_frequencies(inv_freq, s):
  factor, low, high = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
  old_len = s["original_max_position"]
  wavelen = 2 * math.pi / inv_freq
  scaled = jnp.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
  smooth = (old_len / wavelen - low) / (high - low)
  smoothed = (1 - smooth) * scaled / factor + smooth * scaled
  medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
  return jnp.where(medium, smoothed, scaled)


def rope_frequencies(head_dim: int, theta: float, scaling=None) -> jax.Array:
  """Inverse frequencies float32[Dh/2]: theta^(-2i/Dh), then the `scaling` variant.

  `scaling` is None (plain) or a tuple of (key, value) pairs with 'type' naming a ROPE_SCALINGS
  entry (a tuple, not a dict, so that modules holding it stay hashable).
  """
  inv_freq = theta ** (-jnp.arange(head_dim // 2, dtype=jnp.float32) * 2.0 / head_dim)
  if scaling is None:
    return inv_freq
  s = dict(scaling)
  return ROPE_SCALINGS.get(s["type"])(inv_freq, s).astype(jnp.float32)


def apply_rope(x: jax.Array, positions: jax.Array, theta: float, scaling=None) -> jax.Array:
  """Rotary embedding (rotate-half form). x float[B, T, H, Dh], positions int[B, T].

  Positions are explicit (not arange) because packed rows restart at 0 per example and decode
  steps sit at arbitrary offsets. `scaling`: see `rope_frequencies`.
  """
  return apply_rope_frequencies(x, positions, rope_frequencies(x.shape[-1], theta, scaling))


def _computed_once(sin: jax.Array, cos: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The RoPE tables float32[B, T, 1, Dh/2], materialised once on XLA's CPU backend.

  XLA's CPU loop fusion fuses sin and cos into every fusion that reads them and evaluates them
  again for each element it writes: for every head, for both halves, and once more in the
  backward pass's adjoint; in the benchmark's train step those fusions were the largest
  non-matmul ops of the decoder's attention (docs/performance.md). XLA's CPU backend drops
  `optimization_barrier` before fusion, but does not fuse through a `reduce_precision`; one to
  float32's own 8 exponent and 23 mantissa bits leaves every value unchanged.
  """
  tables = jax.lax.reduce_precision(jnp.stack([sin, cos]), exponent_bits=8, mantissa_bits=23)
  return tables[0], tables[1]


def apply_rope_frequencies(x: jax.Array, positions: jax.Array, freq: jax.Array) -> jax.Array:
  """`apply_rope` with given inverse frequencies float32[Dh/2] (e.g. chosen per layer)."""
  half = x.shape[-1] // 2
  angle = positions.astype(jnp.float32)[:, :, None, None] * freq  # [B, T, 1, Dh/2]
  sin, cos = jnp.sin(angle), jnp.cos(angle)
  if current_platform() == "cpu":
    sin, cos = _computed_once(sin, cos)
  x32 = x.astype(jnp.float32)
  x1, x2 = x32[..., :half], x32[..., half:]
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)


# Activation functions by name (decoder.mlp_activation, vit.activation): Hugging Face's `silu`,
# `gelu_pytorch_tanh` / `gelu_new` (= 'gelu_tanh'), exact `gelu` (erf) and CLIP's `quick_gelu`.
ACTIVATIONS = Registry("activation")
ACTIVATIONS.add("silu", nn.silu)
ACTIVATIONS.add("gelu_tanh", lambda x: nn.gelu(x, approximate=True))
ACTIVATIONS.add("gelu", lambda x: nn.gelu(x, approximate=False))
ACTIVATIONS.add("quick_gelu", lambda x: x * nn.sigmoid(1.702 * x))


class SwiGLU(nn.Module):
  """Gated MLP: down(act(gate(x)) * up(x)). float[B, T, D] -> float[B, T, D].

  act is silu (SwiGLU, Llama / Qwen) or another ACTIVATIONS entry (Gemma: 'gelu_tanh', GeGLU)."""
  mlp_dim: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  activation: str = "silu"

  @nn.compact
  def __call__(self, x):
    d = x.shape[-1]
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    gate = dense(self.mlp_dim, ("embed", "mlp"), name="wi_gate", **kw)(x)
    up = dense(self.mlp_dim, ("embed", "mlp"), name="wi_up", **kw)(x)
    h = constrain(ACTIVATIONS.get(self.activation)(gate) * up, BATCH_LENGTH_MLP)
    return dense(d, ("mlp", "embed"), name="wo", **kw)(h)


class GeluMLP(nn.Module):
  """ViT-style MLP with biases: fc2(act(fc1(x))). float[N, P, D] -> float[N, P, out_dim or D].

  act: tanh-approximate GELU (SigLIP, big_vision) or another ACTIVATIONS entry (CLIP:
  'quick_gelu')."""
  mlp_dim: int
  out_dim: int | None = None
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  activation: str = "gelu_tanh"

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype, use_bias=True)
    h = dense(self.mlp_dim, ("embed", "mlp"), name="fc1", **kw)(x)
    h = constrain(ACTIVATIONS.get(self.activation)(h), BATCH_LENGTH_MLP)
    return dense(self.out_dim or x.shape[-1], ("mlp", "embed"), name="fc2", **kw)(h)


class Attention(nn.Module):
  """Multi-head / grouped-query self-attention with optional RoPE and KV cache.

  x float[B, T, D] -> float[B, T, D]. `num_kv_heads` divides `num_heads`; each KV head serves
  num_heads // num_kv_heads query heads (GQA; MHA when equal). `rope_theta=None` disables RoPE
  (the ViT uses absolute position embeddings instead).

  decode=True keeps k, v, a key-valid mask (segment_ids != 0) and a scalar index in the 'cache'
  collection. Every call writes its T keys at cache_index and attends to (a) earlier valid cached
  keys and (b) its own keys by the training mask rule. So a prefill (first call, index 0) behaves
  like training, and a T=1 step attends to every valid cached key plus itself. During `init` the
  cache is only allocated (length = the init batch length).

  `kernel` names the attention implementation (`mmscale.models.attention`: xla | splash | cudnn
  | auto); decoding with the cache always takes the XLA path. The mask rule: bidirectional within
  a segment when the call gets no `mask_ar` (the ViT), causal when `causal` is set, else the
  prefix rule of `mask_ar`.
  """
  num_heads: int
  num_kv_heads: int
  head_dim: int
  rope_theta: float | None = None
  use_bias: bool = False
  decode: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  # Pretrained families (mmscale/hf): biases on q/k/v only (Qwen2; None = `use_bias`), RMSNorm of
  # each query/key head before RoPE (Qwen3) with `norm_eps`, and a RoPE scaling variant.
  qkv_bias: bool | None = None
  qk_norm: bool = False
  norm_eps: float = 1e-6
  rope_scaling: tuple | None = None
  kernel: str = "xla"
  causal: bool = False
  # Gemma 2 / 3: q/k norms multiply by (1 + scale); scores scaled by query_pre_attn_scalar^-0.5
  # (0: head_dim^-0.5); tanh soft-capping of the scores (logit_softcap, 0 = off); a sliding
  # window of `sliding_window` key slots (0 = none) on the layers whose call passes `local`
  # True, which also use plain RoPE with base `rope_local_theta` (0: the layer's own RoPE).
  # The score terms go to the kernel as `attention.ScoreTerms`.
  norm_scale_plus_one: bool = False
  query_pre_attn_scalar: float = 0.0
  logit_softcap: float = 0.0
  sliding_window: int = 0
  rope_local_theta: float = 0.0

  @nn.compact
  def __call__(self, x, positions=None, segment_ids=None, mask_ar=None, local=None):
    """`local`: bool[] (may be traced), whether this layer is a sliding-window layer; None = it
    is when `sliding_window` > 0."""
    b, t, d = x.shape
    h, kvh, dh = self.num_heads, self.num_kv_heads, self.head_dim
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype, use_bias=self.use_bias)
    in_kw = dict(kw, use_bias=self.use_bias if self.qkv_bias is None else self.qkv_bias)
    q = dense((h, dh), ("embed", "heads", "kv"), name="query", **in_kw)(x)
    k = dense((kvh, dh), ("embed", "kv_heads", "kv"), name="key", **in_kw)(x)
    v = dense((kvh, dh), ("embed", "kv_heads", "kv"), name="value", **in_kw)(x)
    if self.qk_norm:
      norm_kw = dict(epsilon=self.norm_eps, dtype=self.dtype, param_dtype=self.param_dtype,
                     axis_name="kv", scale_plus_one=self.norm_scale_plus_one)
      q = RMSNorm(name="query_norm", **norm_kw)(q)
      k = RMSNorm(name="key_norm", **norm_kw)(k)
    q = constrain(q, BATCH_LENGTH_HEADS_KV)
    if self.rope_theta is not None:
      freq = rope_frequencies(dh, self.rope_theta, self.rope_scaling)
      if self.sliding_window and self.rope_local_theta:
        local_freq = rope_frequencies(dh, self.rope_local_theta)
        freq = local_freq if local is None else jnp.where(local, local_freq, freq)
      q = apply_rope_frequencies(q, positions, freq)
      k = apply_rope_frequencies(k, positions, freq)

    if segment_ids is None:
      segment_ids = jnp.ones((b, t), jnp.int32)
    kind = "bidirectional" if mask_ar is None else "causal" if self.causal else "prefix"
    scalar = self.query_pre_attn_scalar
    terms = ScoreTerms(scale=scalar ** -0.5 if scalar and scalar != dh else None,
                       logit_softcap=self.logit_softcap, sliding_window=self.sliding_window,
                       local=local)
    if self.decode:
      mask = mask_for_kind(segment_ids, mask_ar, kind)
      k, v, mask, query_offset = self._use_cache(k, v, mask, segment_ids)
      out = attend_with_mask(q, k, v, terms.mask(mask, query_offset), terms)
    else:
      out = attend(q, k, v, segment_ids, mask_ar, kind=kind, kernel=self.kernel, terms=terms)
    out = constrain(out.reshape(b, t, h, dh), BATCH_LENGTH_HEADS_KV)
    return dense(d, ("heads", "kv", "embed"), axis=(-2, -1), name="out", **kw)(out)

  def _use_cache(self, k, v, local_mask, segment_ids):
    """Writes k/v into the cache; returns (all keys, all values, mask bool[B, T, L], the cache
    slot of the first query)."""
    initialized = self.has_variable("cache", "cached_key")
    ck = self.variable("cache", "cached_key", jnp.zeros, k.shape, k.dtype)
    cv = self.variable("cache", "cached_value", jnp.zeros, v.shape, v.dtype)
    cvalid = self.variable("cache", "cached_valid", jnp.zeros, segment_ids.shape, jnp.bool_)
    cidx = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
    if not initialized:  # init: allocate only
      return k, v, local_mask, 0
    t = k.shape[1]
    length = ck.value.shape[1]
    idx = cidx.value
    old_valid = cvalid.value
    ck.value = jax.lax.dynamic_update_slice(ck.value, k.astype(ck.value.dtype), (0, idx, 0, 0))
    cv.value = jax.lax.dynamic_update_slice(cv.value, v.astype(cv.value.dtype), (0, idx, 0, 0))
    cvalid.value = jax.lax.dynamic_update_slice(old_valid, segment_ids != 0, (0, idx))
    cidx.value = idx + t

    key_pos = jnp.arange(length)
    earlier = (key_pos < idx)[None, None, :] & old_valid[:, None, :]  # [B, 1, L]
    rel = key_pos - idx  # key j is new key rel[j] of this call
    is_new = (rel >= 0) & (rel < t)
    new = jnp.take(local_mask, jnp.clip(rel, 0, t - 1), axis=2) & is_new[None, None, :]
    return ck.value, cv.value, earlier | new, idx


def replace_with_nearest(x: jax.Array, centroids: jax.Array, where: jax.Array) -> jax.Array:
  """Centroid replacement (the erasure probe): x[b, t] -> its nearest centroid where `where`.

  x float[B, T, D], centroids float[C, D], where bool[B, T] -> float[B, T, D] (dtype of x).
  Nearest by squared Euclidean distance, computed in float32 as |c|^2 - 2 x.c (|x|^2 is the same
  for every centroid, so it cannot change the argmin). Positions outside `where` keep x exactly,
  and a replaced row is the centroid itself, so a centroid set holding every distinct hidden
  state maps each state to itself (the identity).
  """
  x32, c32 = x.astype(jnp.float32), centroids.astype(jnp.float32)
  scores = jnp.sum(jnp.square(c32), axis=-1) - 2.0 * jnp.einsum("btd,cd->btc", x32, c32)
  nearest = jnp.take(centroids, jnp.argmin(scores, axis=-1), axis=0).astype(x.dtype)
  return jnp.where(where[..., None], nearest, x)
