"""ViT image encoder: float[N, H, W, 3] -> float[N, P, width], P = (H / patch_size)^2.

Pre-norm blocks (LayerNorm, MHA, GELU MLP) and a final LayerNorm, as in big_vision's ViT without
a class token: every patch is an output token because the connector pools or projects them.
CLIP's variant (class_token, pre_norm, no patch bias, quick-GELU) computes with a class token and
still returns the patch tokens only, which is what LLaVA-style connectors take from CLIP.
"""

import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from mmscale.models.layers import (BATCH_LENGTH_EMBED, Attention, Dtype, GeluMLP, add_in_float32,
                                   constrain,
                                   layer_norm, partitioned)


def sincos2d_posemb(grid: int, width: int, temperature: float = 10_000.0) -> np.ndarray:
  """Fixed 2-D sine-cosine position embedding, float32[grid*grid, width] (width % 4 == 0).

  A quarter of the channels each for sin/cos of the row and of the column coordinate (MoCo v3 /
  big_vision `posemb_sincos_2d`); needs no parameters and extrapolates to any grid.
  """
  y, x = np.mgrid[:grid, :grid]
  omega = 1.0 / temperature ** (np.arange(width // 4) / (width // 4 - 1 if width > 4 else 1))
  y = y.reshape(-1)[:, None] * omega[None, :]
  x = x.reshape(-1)[:, None] * omega[None, :]
  return np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1).astype(np.float32)


class ViTBlock(nn.Module):
  """x + MHA(LN(x)); x + MLP(LN(x)). float[N, P, width] -> same."""
  heads: int
  mlp_dim: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  activation: str = "gelu_tanh"
  norm_eps: float = 1e-6
  attention: str = "xla"  # attention kernel (models/attention.py); bidirectional mask

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    width = x.shape[-1]
    h = layer_norm(name="ln_attn", epsilon=self.norm_eps, **kw)(x)
    x = x + Attention(self.heads, self.heads, width // self.heads, use_bias=True,
                      kernel=self.attention, name="attn", **kw)(h)
    x = constrain(x, BATCH_LENGTH_EMBED)
    h = layer_norm(name="ln_mlp", epsilon=self.norm_eps, **kw)(x)
    x = x + GeluMLP(self.mlp_dim, name="mlp", activation=self.activation, **kw)(h)
    return constrain(x, BATCH_LENGTH_EMBED)


class ViT(nn.Module):
  """Patch embedding (a stride-p conv), position embedding, `depth` blocks, final LayerNorm.

  posemb: 'learned' (a float[1, P, width] parameter) or 'sincos2d' (fixed).
  final_norm: False returns the last block's output without the final LayerNorm (what LLaVA-style
  models take from a pretrained SigLIP: its hidden states before `post_layernorm`).
  CLIP (OpenAI ViT): class_token prepends a learned token (its position embedding first, so the
  learned table is float[1, P + 1, width]) that is dropped from the output; pre_norm applies a
  LayerNorm to the embeddings before the blocks (CLIP's `pre_layrnorm`); patch_bias=False has
  no bias on the patch projection. activation: the MLP's (layers.ACTIVATIONS); norm_eps: every
  LayerNorm's epsilon (SigLIP 1e-6, CLIP 1e-5).
  pixel_mean / pixel_std: the per-channel normalisation the tower was trained with, on [0, 1]
  pixels; the pipeline's [-1, 1] images are mapped to ((x + 1) / 2 - mean) / std first (mean
  = std = 0.5, SigLIP's and mmscale's own, is the identity and adds nothing; CLIP's differ).
  """
  image_size: int
  patch_size: int
  width: int
  depth: int
  heads: int
  mlp_dim: int
  posemb: str = "learned"
  final_norm: bool = True
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  class_token: bool = False
  pre_norm: bool = False
  patch_bias: bool = True
  activation: str = "gelu_tanh"
  norm_eps: float = 1e-6
  pixel_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
  pixel_std: tuple[float, ...] = (0.5, 0.5, 0.5)
  attention: str = "xla"  # attention kernel: xla | splash | cudnn | auto (models/attention.py)

  @property
  def grid(self) -> int:
    return self.image_size // self.patch_size

  @nn.compact
  def __call__(self, images):
    """images float[N, H, W, 3] in [-1, 1] -> float[N, P, width]."""
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    p = self.patch_size
    if tuple(self.pixel_mean) != (0.5,) * 3 or tuple(self.pixel_std) != (0.5,) * 3:
      mean, std = jnp.asarray(self.pixel_mean), jnp.asarray(self.pixel_std)
      images = ((images.astype(jnp.float32) + 1.0) * 0.5 - mean) / std
    x = nn.Conv(self.width, (p, p), strides=(p, p), padding="VALID", name="patch_embed",
                use_bias=self.patch_bias,
                kernel_init=partitioned(nn.initializers.lecun_normal(),
                                        (None, None, None, "embed")),  # 3 RGB channels
                bias_init=partitioned(nn.initializers.zeros_init(), ("embed",)),
                **kw)(images.astype(self.dtype))
    n = x.shape[0]
    x = x.reshape(n, -1, self.width)  # [N, P, width], row-major over the patch grid
    if self.class_token:
      cls = self.param("cls_token", partitioned(nn.initializers.normal(stddev=0.02),
                                                (None, None, "embed")),
                       (1, 1, self.width), self.param_dtype)
      x = jnp.concatenate([jnp.broadcast_to(cls.astype(self.dtype), (n, 1, self.width)), x],
                          axis=1)  # [N, 1 + P, width]
    if self.posemb == "learned":
      pos = self.param("pos_embedding",
                       partitioned(nn.initializers.normal(stddev=0.02), (None, "patches", "embed")),
                       (1, x.shape[1], self.width), self.param_dtype)
    else:
      pos = jnp.asarray(sincos2d_posemb(self.grid, self.width))[None]
      if self.class_token:  # the class token gets no position
        pos = jnp.pad(pos, ((0, 0), (1, 0), (0, 0)))
    x = constrain(add_in_float32(x, pos, self.dtype), BATCH_LENGTH_EMBED)
    norm_kw = dict(kw, epsilon=self.norm_eps)
    if self.pre_norm:
      x = layer_norm(name="ln_pre", **norm_kw)(x)
    for i in range(self.depth):
      x = ViTBlock(self.heads, self.mlp_dim, name=f"block_{i}", activation=self.activation,
                   norm_eps=self.norm_eps, attention=self.attention, **kw)(x)
    if self.final_norm:
      x = layer_norm(name="ln_final", **norm_kw)(x)
    return x[:, 1:] if self.class_token else x
