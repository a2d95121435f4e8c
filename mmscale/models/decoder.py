"""Decoder LM: pre-norm transformer (RMSNorm, RoPE, GQA, SwiGLU), optionally scanned + remat.

The pretrained families' variants are fields (set by the presets in mmscale/hf): Gemma's
(1 + scale) norms, norms after attention and MLP too, GeGLU, soft-capping, sliding-window layers.

The decoder takes embeddings (not token ids) so that the MLLM can put image tokens into the
sequence first; `embed` and `logits` are separate methods sharing one embedding table (tied
output) or using a separate `vocab` projection (untied).
"""

import jax
import jax.numpy as jnp
from flax import linen as nn

from typing import Any

from mmscale.registry import Registry
from mmscale.models.moe import MoEBlock, MoESettings, is_moe_layer
from mmscale.models.layers import (BATCH_LENGTH_EMBED, Attention, Dtype, RMSNorm, SwiGLU,
                                   constrain, dense, partitioned, replace_with_nearest)

# decoder.remat_policy -> jax.checkpoint policy. 'none' = no rematerialisation at all; 'full' =
# recompute everything in the backward pass (the smallest memory).
REMAT_POLICIES = Registry("remat policy")
for _name, _policy in (
    ("none", None),
    ("full", jax.checkpoint_policies.nothing_saveable),
    ("nothing_saveable", jax.checkpoint_policies.nothing_saveable),
    ("everything_saveable", jax.checkpoint_policies.everything_saveable),
    ("dots_saveable", jax.checkpoint_policies.dots_saveable),
    ("dots_with_no_batch_dims_saveable", jax.checkpoint_policies.dots_with_no_batch_dims_saveable),
):
  REMAT_POLICIES.add(_name, _policy)


class DecoderBlock(nn.Module):
  """x + Attn(RMSNorm(x)); x + MLP(RMSNorm(x)). float[B, T, D] -> float[B, T, D].

  post_norms=True (Gemma 2 / 3) also normalises each sub-layer's output before the residual add:
  x + RMSNorm(Attn(RMSNorm(x))), x + RMSNorm(MLP(RMSNorm(x))).

  The MLP is a SwiGLU, or a mixture of SwiGLU experts (mmscale/models/moe.py) when `moe` is set.

  `decode` / `deterministic` are fields, not call arguments, so that nn.remat and nn.scan see only
  arrays as arguments. Returns (x, None) to be usable as an nn.scan body.

  Analysis hooks (mmscale/analysis; both free when unused):
  - the block output is sown as 'intermediates'/'hidden' (stored only when the caller makes the
    collection mutable; a Python no-op otherwise);
  - `erase_layer` = (centroids float[C, D], active bool[]) and `erase_mask` bool[B, T]: where
    active, positions in the mask are replaced by their nearest centroid after the block
    (`layers.replace_with_nearest`). None (the normal path) adds no operation.
  `local` (bool[], scanned with the layers): this layer is a sliding-window layer (see
  `Decoder.local_layers`); None when the decoder has no sliding window.
  """
  heads: int
  kv_heads: int
  head_dim: int
  mlp_dim: int
  rope_theta: float
  dropout_rate: float = 0.0
  decode: bool = False
  deterministic: bool = True
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  # the pretrained families' variants (see `Decoder`)
  norm_eps: float = 1e-6
  qkv_bias: bool = False
  qk_norm: bool = False
  rope_scaling: tuple | None = None
  moe: MoESettings | None = None
  norm_scale_plus_one: bool = False
  post_norms: bool = False
  mlp_activation: str = "silu"
  query_pre_attn_scalar: float = 0.0
  attn_logit_softcap: float = 0.0
  sliding_window: int = 0
  rope_local_theta: float = 0.0
  attention: str = "xla"  # attention kernel (models/attention.py)
  causal_only: bool = False  # mask_ar is all ones: lets a kernel use its static causal mask

  @nn.compact
  def __call__(self, x, positions, segment_ids, mask_ar, erase_layer=None, erase_mask=None,
               local=None):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    norm = lambda name: RMSNorm(self.norm_eps, name=name,  # noqa: E731
                                scale_plus_one=self.norm_scale_plus_one, **kw)
    drop = nn.Dropout(self.dropout_rate, deterministic=self.deterministic)
    h = norm("norm_attn")(x)
    h = Attention(self.heads, self.kv_heads, self.head_dim, rope_theta=self.rope_theta,
                  decode=self.decode, qkv_bias=self.qkv_bias, qk_norm=self.qk_norm,
                  norm_eps=self.norm_eps, rope_scaling=self.rope_scaling,
                  norm_scale_plus_one=self.norm_scale_plus_one,
                  query_pre_attn_scalar=self.query_pre_attn_scalar,
                  logit_softcap=self.attn_logit_softcap, sliding_window=self.sliding_window,
                  rope_local_theta=self.rope_local_theta, kernel=self.attention,
                  causal=self.causal_only, name="attn",
                  **kw)(h, positions, segment_ids, mask_ar, local)
    if self.post_norms:
      h = norm("norm_attn_out")(h)
    x = constrain(x + drop(h), BATCH_LENGTH_EMBED)
    mlp = (SwiGLU(self.mlp_dim, name="mlp", activation=self.mlp_activation, **kw)
           if self.moe is None else MoEBlock(self.moe, name="mlp", **kw))
    h = mlp(norm("norm_mlp")(x))
    if self.post_norms:
      h = norm("norm_mlp_out")(h)
    x = constrain(x + drop(h), BATCH_LENGTH_EMBED)
    self.sow("intermediates", "hidden", x)
    if erase_layer is not None:
      centroids, active = erase_layer
      x = replace_with_nearest(x, centroids, erase_mask & active)
    return x, None


class DecoderGroup(nn.Module):
  """`every` consecutive blocks, the last one MoE: the scanned unit of a decoder with
  moe_every > 1, so dense and MoE layers (different params) still scan as one body.

  Same call contract as DecoderBlock; per-layer erase arrays carry a leading [every] axis. Sows
  the group's block outputs stacked, float[every, B, T, D], as 'intermediates'/'hidden'.
  """
  block: Any  # the (possibly remat'd) DecoderBlock class
  every: int
  block_kwargs: Any  # DecoderBlock fields except moe (a hashable tuple of pairs)
  moe: MoESettings

  @nn.compact
  def __call__(self, x, positions, segment_ids, mask_ar, erase_layer=None, erase_mask=None,
               local=None):
    hidden = []
    for j in range(self.every):
      moe = self.moe if is_moe_layer(j, self.every) else None
      this = None if erase_layer is None else jax.tree.map(lambda a, j=j: a[j], erase_layer)
      x, _ = self.block(**dict(self.block_kwargs), moe=moe, name=f"block_{j}")(
          x, positions, segment_ids, mask_ar, this, erase_mask,
          None if local is None else local[j])
      hidden.append(x)
    self.sow("intermediates", "hidden", jnp.stack(hidden))
    return x, None


class Decoder(nn.Module):
  """Token embedding, `depth` DecoderBlocks, final RMSNorm, output projection.

  scan_layers=True stacks the block params on a leading 'layers' axis (one compiled block: fast
  compiles at depth); the 'cache' collection is stacked the same way, so decode works scanned.
  With moe_every = N > 1 the scanned unit is a DecoderGroup of N blocks (N-1 dense, then one
  MoE), stacked over depth / N groups; the router statistics ('moe' collection) stack the same way.
  """
  vocab_size: int
  width: int
  depth: int
  heads: int
  kv_heads: int
  head_dim: int
  mlp_dim: int
  rope_theta: float = 10_000.0
  tie_embeddings: bool = True
  scan_layers: bool = True
  remat_policy: str = "none"
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  decode: bool = False  # use / fill the 'cache' collection (see layers.Attention)
  deterministic: bool = True  # no dropout
  # Variants of the pretrained families (config presets in mmscale/hf): RMSNorm epsilon, biases
  # on q/k/v (Qwen2), per-head q/k RMSNorm (Qwen3), a RoPE scaling variant (Llama 3.1; a tuple of
  # (key, value) pairs, see layers.rope_frequencies), and whether embeddings are multiplied by
  # sqrt(width) (mmscale's own init: True; Llama/Qwen: False).
  norm_eps: float = 1e-6
  qkv_bias: bool = False
  qk_norm: bool = False
  rope_scaling: tuple | None = None
  scale_embeddings: bool = True
  moe_every: int = 0  # 0: dense; N: every Nth layer is a mixture of experts (moe.is_moe_layer)
  moe: MoESettings | None = None
  # Gemma 2 / 3 (docs/pretrained.md): (1 + scale) RMSNorms, norms after attention and MLP too,
  # the gated MLP's activation, attention scores x query_pre_attn_scalar^-0.5 (0: head_dim),
  # tanh soft-capping of attention scores and of the final logits (0 = off), sliding-window
  # layers (window in key slots, 0 = none; global_every = N: the last of each N layers attends
  # globally, 0: every layer slides) whose RoPE base is rope_local_theta (0: rope_theta).
  norm_scale_plus_one: bool = False
  post_norms: bool = False
  mlp_activation: str = "silu"
  query_pre_attn_scalar: float = 0.0
  attn_logit_softcap: float = 0.0
  final_logit_softcap: float = 0.0
  sliding_window: int = 0
  global_every: int = 0
  rope_local_theta: float = 0.0
  attention: str = "xla"  # attention kernel: xla | splash | cudnn | auto (models/attention.py)
  causal_only: bool = False  # every token attends causally (the caller passes mask_ar = 1)

  def setup(self):
    # std 1/sqrt(D), inputs scaled by sqrt(D): unit-scale residual stream, and tied logits
    # x @ E^T start at unit scale too.
    self.embedding = nn.Embed(
        self.vocab_size, self.width, dtype=self.dtype, param_dtype=self.param_dtype,
        embedding_init=partitioned(nn.initializers.normal(self.width ** -0.5), ("vocab", "embed")))
    self.final_norm = RMSNorm(self.norm_eps, dtype=self.dtype, param_dtype=self.param_dtype,
                              scale_plus_one=self.norm_scale_plus_one)
    if not self.tie_embeddings:
      self.unembed = dense(self.vocab_size, ("embed", "vocab"), dtype=self.dtype,
                           param_dtype=self.param_dtype)
    block = DecoderBlock
    policy = REMAT_POLICIES.get(self.remat_policy)
    if policy is not None:
      block = nn.remat(DecoderBlock, policy=policy, prevent_cse=not self.scan_layers)
    kwargs = dict(heads=self.heads, kv_heads=self.kv_heads, head_dim=self.head_dim,
                  mlp_dim=self.mlp_dim, rope_theta=self.rope_theta,
                  dropout_rate=self.dropout_rate, decode=self.decode,
                  deterministic=self.deterministic, dtype=self.dtype,
                  param_dtype=self.param_dtype, norm_eps=self.norm_eps, qkv_bias=self.qkv_bias,
                  qk_norm=self.qk_norm, rope_scaling=self.rope_scaling,
                  norm_scale_plus_one=self.norm_scale_plus_one, post_norms=self.post_norms,
                  mlp_activation=self.mlp_activation,
                  query_pre_attn_scalar=self.query_pre_attn_scalar,
                  attn_logit_softcap=self.attn_logit_softcap, sliding_window=self.sliding_window,
                  rope_local_theta=self.rope_local_theta,
                  attention=self.attention, causal_only=self.causal_only)
    if not self.scan_layers:
      self.layers = [block(**kwargs, moe=self.moe if is_moe_layer(i, self.moe_every) else None)
                     for i in range(self.depth)]
      return
    unit, length = block, self.depth
    if self.moe_every > 1:  # scan groups of moe_every layers, the last of each MoE
      unit, length = DecoderGroup, self.depth // self.moe_every
      kwargs = dict(block=block, every=self.moe_every, moe=self.moe,
                    block_kwargs=tuple(sorted(kwargs.items())))
    elif self.moe_every == 1:
      kwargs["moe"] = self.moe
    stack = nn.scan(
        unit, variable_axes={"params": 0, "cache": 0, "intermediates": 0, "moe": 0},
        split_rngs={"params": True, "dropout": True},
        # + per-layer erase, erase mask, per-layer sliding-window flag
        in_axes=(nn.broadcast,) * 3 + (0, nn.broadcast, 0),
        length=length, metadata_params={nn.PARTITION_NAME: "layers"})
    self.layers = stack(**kwargs)

  def embed(self, tokens):
    """int[B, T] -> float[B, T, D]."""
    x = self.embedding(tokens)
    if self.scale_embeddings:
      x = x * jnp.asarray(self.width ** 0.5, self.dtype)
    return constrain(x, BATCH_LENGTH_EMBED)

  def local_layers(self) -> jax.Array | None:
    """bool[depth]: which layers attend within the sliding window (None: no window). With
    global_every = N the last of each N layers is global (Gemma 2: N = 2, Gemma 3: N = 6);
    depth need not be a multiple of N (Gemma 3 1B: 26 layers, the last two local)."""
    if not self.sliding_window:
      return None
    every = self.global_every
    return jnp.asarray([not (every and (i + 1) % every == 0) for i in range(self.depth)])

  def __call__(self, x, positions, segment_ids, mask_ar, erase=None, features_only=False):
    """x float[B, T, D] embeddings -> logits float32[B, T, V].

    features_only=True returns (final-normed hidden float[B, T, D], output matrix float[V, D])
    instead, for a loss that projects only the positions it needs (models/fused_loss.py; it
    applies `final_logit_softcap` itself).

    `erase` (optional, the centroid-replacement probe): {"centroids": float[depth, C, D],
    "active": bool[depth], "mask": bool[B, T]}; after each active layer the hidden states at mask
    positions become their nearest centroid of that layer. Per-layer arrays are scanned with the
    layers, the mask is broadcast; None leaves the normal path as it was.
    """
    layer_erase = None if erase is None else (erase["centroids"], erase["active"])
    mask = None if erase is None else erase["mask"]
    local = self.local_layers()
    if self.scan_layers and self.moe_every > 1:  # per-layer arrays -> [G, every, ...]
      layer_erase, local = jax.tree.map(
          lambda a: a.reshape((-1, self.moe_every) + a.shape[1:]), (layer_erase, local))
    if self.scan_layers:
      x, _ = self.layers(x, positions, segment_ids, mask_ar, layer_erase, mask, local)
    else:
      for i, layer in enumerate(self.layers):
        this = None if erase is None else jax.tree.map(lambda a, i=i: a[i], layer_erase)
        x, _ = layer(x, positions, segment_ids, mask_ar, this, mask,
                     None if local is None else local[i])
    if features_only:
      return constrain(self.final_norm(x), BATCH_LENGTH_EMBED), self.output_matrix()
    return self.logits(x)

  def output_matrix(self):
    """float[V, D] (param dtype): logits = final_norm(x) @ output_matrix().T."""
    if self.tie_embeddings:
      return self.embedding.embedding
    return self.unembed.variables["params"]["kernel"].T

  def logits(self, x):
    """float[B, T, D] -> float32[B, T, V] (after the final norm; soft-capped to
    final_logit_softcap * tanh(logits / final_logit_softcap) when that is > 0, Gemma 2)."""
    x = self.final_norm(x)
    if self.tie_embeddings:
      out = self.embedding.attend(x)
    else:
      out = self.unembed(x)
    out = out.astype(jnp.float32)
    if self.final_logit_softcap:
      out = self.final_logit_softcap * jnp.tanh(out / self.final_logit_softcap)
    return constrain(out, ("activation_batch", "activation_length", "activation_vocab"))
