"""MLLM: ViT -> connector -> image tokens placed in the decoder's token sequence.

One model path for every example kind (caption, interleaved, pair, VQA, text-only): what differs
is data (`image_positions`, `mask_ar`, `segment_ids`), never a branch in the model. The batch
layout is mmscale/data/batch.py's (docs/contracts.md).
"""

from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from mmscale.models.connectors import get_connector
from mmscale.models.decoder import Decoder
from mmscale.models.layers import BATCH_LENGTH_EMBED, constrain, dtype_of
from mmscale.models.moe import MoESettings
from mmscale.models.vit import ViT

def rope_scaling(cfg) -> tuple | None:
  """`decoder.rope_scaling` as the hashable (key, value) pairs layers.rope_frequencies takes;
  None for type 'none' (plain RoPE)."""
  scaling = cfg.decoder.rope_scaling
  return None if scaling.type == "none" else tuple(sorted(scaling.items()))


def head_dim(cfg) -> int:
  """`decoder.head_dim`, where 0 means width // heads."""
  return cfg.decoder.head_dim or cfg.decoder.width // cfg.decoder.heads


def num_patches(cfg) -> int:
  return (cfg.vit.image_size // cfg.vit.patch_size) ** 2


class MLLM(nn.Module):
  """Multimodal LM. `config` is a validated `config.model` (every field of the schema in
  mmscale/config.py; `build_model` passes a FrozenConfigDict so the module is hashable, e.g. as
  a static jit argument)."""
  config: Any

  def _dtypes(self):
    return dict(dtype=dtype_of(self.config.dtype),
                param_dtype=dtype_of(self.config.param_dtype))

  def setup(self):
    cfg, v, c = self.config, self.config.vit, self.config.connector
    self.vit = ViT(image_size=v.image_size, patch_size=v.patch_size, width=v.width,
                   depth=v.depth, heads=v.heads, mlp_dim=v.mlp_dim,
                   posemb=cfg.vit.posemb, final_norm=cfg.vit.final_norm,
                   attention=cfg.attention, **self._dtypes())
    self.connector = get_connector(c.name)(
        num_tokens=c.num_tokens, hidden_dim=c.hidden_dim or cfg.decoder.width,
        out_dim=cfg.decoder.width, num_heads=v.heads, depth=cfg.connector.depth,
        **self._dtypes())

  def encode_images(self, images):
    """images float[B, M, H, W, 3] -> image tokens float[B, M*K, D] (decoder width D)."""
    b, m = images.shape[:2]
    patches = self.vit(images.reshape((b * m,) + images.shape[2:]))  # [B*M, P, width_vit]
    tokens = self.connector(patches)  # [B*M, K, D]
    return tokens.reshape(b, m * tokens.shape[1], tokens.shape[2])

  @nn.compact
  def __call__(self, batch: dict, *, decode: bool = False, deterministic: bool = True,
               erase: dict | None = None, features_only: bool = False):
    """batch (mmscale/data/batch.py layout) -> logits float32[B, T, V].

    features_only=True returns (hidden float[B, T, D], output matrix float[V, D]) instead of
    logits (`Decoder.__call__`): the train step's loss projects only its loss positions.

    `erase` (optional): centroid replacement in the decoder, {"centroids": float[depth, C, D],
    "active": bool[depth], "mask": bool[B, T]} (see `Decoder.__call__`; built by
    mmscale/analysis). Hidden states of every decoder block are sown as
    'intermediates'/decoder/.../'hidden' when that collection is mutable.

    `mask_ar` defaults to all ones (causal) and `segment_ids` to all ones, which is what decode
    steps need. Images are used when the batch has `images` and `image_positions` (index T =
    unused slot, dropped by the scatter).
    """
    d = self.config.decoder
    decoder = Decoder(
        vocab_size=d.vocab_size, width=d.width, depth=d.depth, heads=d.heads,
        kv_heads=d.kv_heads, head_dim=head_dim(self.config), mlp_dim=d.mlp_dim,
        rope_theta=self.config.decoder.rope_theta,
        tie_embeddings=self.config.decoder.tie_embeddings,
        scan_layers=self.config.decoder.scan_layers,
        remat_policy=self.config.decoder.remat_policy,
        dropout_rate=self.config.decoder.dropout_rate, norm_eps=d.norm_eps,
        qkv_bias=d.qkv_bias, qk_norm=d.qk_norm, rope_scaling=rope_scaling(self.config),
        scale_embeddings=d.scale_embeddings,
        moe_every=d.moe_every, moe=MoESettings.from_decoder_config(d),
        attention=self.config.attention, causal_only=d.causal_only,
        decode=decode, deterministic=deterministic, name="decoder", **self._dtypes())
    tokens = batch["tokens"]
    ones = jnp.ones(tokens.shape, jnp.int32)
    segment_ids = batch.get("segment_ids", ones)
    mask_ar = ones if d.causal_only else batch.get("mask_ar", ones)
    positions = batch.get("positions")
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)

    x = decoder.embed(tokens)
    images = batch.get("images")
    if images is not None and "image_positions" in batch and images.shape[1] > 0:
      img = self.encode_images(images).astype(x.dtype)
      rows = jnp.arange(tokens.shape[0])[:, None]
      x = x.at[rows, batch["image_positions"]].set(img, mode="drop")
      x = constrain(x, BATCH_LENGTH_EMBED)
    return decoder(x, positions, segment_ids, mask_ar, erase, features_only=features_only)
