"""Decoder LM: pre-norm transformer (RMSNorm, RoPE, GQA, SwiGLU), optionally scanned + remat.

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

  The MLP is a SwiGLU, or a mixture of SwiGLU experts (mmscale/models/moe.py) when `moe` is set.

  `decode` / `deterministic` are fields, not call arguments, so that nn.remat and nn.scan see only
  arrays as arguments. Returns (x, None) to be usable as an nn.scan body.

  Analysis hooks (mmscale/analysis; both free when unused):
  - the block output is sown as 'intermediates'/'hidden' (stored only when the caller makes the
    collection mutable; a Python no-op otherwise);
  - `erase_layer` = (centroids float[C, D], active bool[]) and `erase_mask` bool[B, T]: where
    active, positions in the mask are replaced by their nearest centroid after the block
    (`layers.replace_with_nearest`). None (the normal path) adds no operation.
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
  attention: str = "xla"  # attention kernel (models/attention.py)
  causal_only: bool = False  # mask_ar is all ones: lets a kernel use its static causal mask

  @nn.compact
  def __call__(self, x, positions, segment_ids, mask_ar, erase_layer=None, erase_mask=None):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    drop = nn.Dropout(self.dropout_rate, deterministic=self.deterministic)
    h = RMSNorm(self.norm_eps, name="norm_attn", **kw)(x)
    h = Attention(self.heads, self.kv_heads, self.head_dim, rope_theta=self.rope_theta,
                  decode=self.decode, qkv_bias=self.qkv_bias, qk_norm=self.qk_norm,
                  norm_eps=self.norm_eps, rope_scaling=self.rope_scaling,
                  kernel=self.attention, causal=self.causal_only, name="attn",
                  **kw)(h, positions, segment_ids, mask_ar)
    x = constrain(x + drop(h), BATCH_LENGTH_EMBED)
    mlp = (SwiGLU(self.mlp_dim, name="mlp", **kw) if self.moe is None
           else MoEBlock(self.moe, name="mlp", **kw))
    h = mlp(RMSNorm(self.norm_eps, name="norm_mlp", **kw)(x))
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
  def __call__(self, x, positions, segment_ids, mask_ar, erase_layer=None, erase_mask=None):
    hidden = []
    for j in range(self.every):
      moe = self.moe if is_moe_layer(j, self.every) else None
      this = None if erase_layer is None else jax.tree.map(lambda a, j=j: a[j], erase_layer)
      x, _ = self.block(**dict(self.block_kwargs), moe=moe, name=f"block_{j}")(
          x, positions, segment_ids, mask_ar, this, erase_mask)
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
  attention: str = "xla"  # attention kernel: xla | splash | cudnn | auto (models/attention.py)
  causal_only: bool = False  # every token attends causally (the caller passes mask_ar = 1)

  def setup(self):
    # std 1/sqrt(D), inputs scaled by sqrt(D): unit-scale residual stream, and tied logits
    # x @ E^T start at unit scale too.
    self.embedding = nn.Embed(
        self.vocab_size, self.width, dtype=self.dtype, param_dtype=self.param_dtype,
        embedding_init=partitioned(nn.initializers.normal(self.width ** -0.5), ("vocab", "embed")))
    self.final_norm = RMSNorm(self.norm_eps, dtype=self.dtype, param_dtype=self.param_dtype)
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
        in_axes=(nn.broadcast,) * 3 + (0, nn.broadcast),  # + per-layer erase, erase mask
        length=length, metadata_params={nn.PARTITION_NAME: "layers"})
    self.layers = stack(**kwargs)

  def embed(self, tokens):
    """int[B, T] -> float[B, T, D]."""
    x = self.embedding(tokens)
    if self.scale_embeddings:
      x = x * jnp.asarray(self.width ** 0.5, self.dtype)
    return constrain(x, BATCH_LENGTH_EMBED)

  def __call__(self, x, positions, segment_ids, mask_ar, erase=None, features_only=False):
    """x float[B, T, D] embeddings -> logits float32[B, T, V].

    features_only=True returns (final-normed hidden float[B, T, D], output matrix float[V, D])
    instead, for a loss that projects only the positions it needs (models/fused_loss.py).

    `erase` (optional, the centroid-replacement probe): {"centroids": float[depth, C, D],
    "active": bool[depth], "mask": bool[B, T]}; after each active layer the hidden states at mask
    positions become their nearest centroid of that layer. Per-layer arrays are scanned with the
    layers, the mask is broadcast; None leaves the normal path as it was.
    """
    layer_erase = None if erase is None else (erase["centroids"], erase["active"])
    mask = None if erase is None else erase["mask"]
    if self.scan_layers and self.moe_every > 1 and layer_erase is not None:  # [G, every, ...]
      layer_erase = jax.tree.map(lambda a: a.reshape((-1, self.moe_every) + a.shape[1:]),
                                 layer_erase)
    if self.scan_layers:
      x, _ = self.layers(x, positions, segment_ids, mask_ar, layer_erase, mask)
    else:
      for i, layer in enumerate(self.layers):
        this = None if erase is None else jax.tree.map(lambda a, i=i: a[i], layer_erase)
        x, _ = layer(x, positions, segment_ids, mask_ar, this, mask)
    if features_only:
      return constrain(self.final_norm(x), BATCH_LENGTH_EMBED), self.output_matrix()
    return self.logits(x)

  def output_matrix(self):
    """float[V, D] (param dtype): logits = final_norm(x) @ output_matrix().T."""
    if self.tie_embeddings:
      return self.embedding.embedding
    return self.unembed.variables["params"]["kernel"].T

  def logits(self, x):
    """float[B, T, D] -> float32[B, T, V] (after the final norm)."""
    x = self.final_norm(x)
    if self.tie_embeddings:
      out = self.embedding.attend(x)
    else:
      out = self.unembed(x)
    return constrain(out.astype(jnp.float32),
                     ("activation_batch", "activation_length", "activation_vocab"))
