"""Decoder LM: pre-norm transformer (RMSNorm, RoPE, GQA, SwiGLU), optionally scanned + remat.

The decoder takes embeddings (not token ids) so that the MLLM can put image tokens into the
sequence first; `embed` and `logits` are separate methods sharing one embedding table (tied
output) or using a separate `vocab` projection (untied).
"""

import jax
import jax.numpy as jnp
from flax import linen as nn

from mmscale.registry import Registry
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
  """x + Attn(RMSNorm(x)); x + SwiGLU(RMSNorm(x)). float[B, T, D] -> float[B, T, D].

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

  @nn.compact
  def __call__(self, x, positions, segment_ids, mask_ar, erase_layer=None, erase_mask=None):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    drop = nn.Dropout(self.dropout_rate, deterministic=self.deterministic)
    h = RMSNorm(name="norm_attn", **kw)(x)
    h = Attention(self.heads, self.kv_heads, self.head_dim, rope_theta=self.rope_theta,
                  decode=self.decode, name="attn", **kw)(h, positions, segment_ids, mask_ar)
    x = constrain(x + drop(h), BATCH_LENGTH_EMBED)
    h = SwiGLU(self.mlp_dim, name="mlp", **kw)(RMSNorm(name="norm_mlp", **kw)(x))
    x = constrain(x + drop(h), BATCH_LENGTH_EMBED)
    self.sow("intermediates", "hidden", x)
    if erase_layer is not None:
      centroids, active = erase_layer
      x = replace_with_nearest(x, centroids, erase_mask & active)
    return x, None


class Decoder(nn.Module):
  """Token embedding, `depth` DecoderBlocks, final RMSNorm, output projection.

  scan_layers=True stacks the block params on a leading 'layers' axis (one compiled block: fast
  compiles at depth); the 'cache' collection is stacked the same way, so decode works scanned.
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

  def setup(self):
    # std 1/sqrt(D), inputs scaled by sqrt(D): unit-scale residual stream, and tied logits
    # x @ E^T start at unit scale too.
    self.embedding = nn.Embed(
        self.vocab_size, self.width, dtype=self.dtype, param_dtype=self.param_dtype,
        embedding_init=partitioned(nn.initializers.normal(self.width ** -0.5), ("vocab", "embed")))
    self.final_norm = RMSNorm(dtype=self.dtype, param_dtype=self.param_dtype)
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
                  param_dtype=self.param_dtype)
    if self.scan_layers:
      stack = nn.scan(
          block, variable_axes={"params": 0, "cache": 0, "intermediates": 0},
          split_rngs={"params": True, "dropout": True},
          in_axes=(nn.broadcast,) * 3 + (0, nn.broadcast),  # + per-layer erase, erase mask
          length=self.depth, metadata_params={nn.PARTITION_NAME: "layers"})
      self.layers = stack(**kwargs)
    else:
      self.layers = [block(**kwargs) for _ in range(self.depth)]

  def embed(self, tokens):
    """int[B, T] -> float[B, T, D]."""
    x = self.embedding(tokens) * jnp.asarray(self.width ** 0.5, self.dtype)
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
