"""ViT image encoder: float[N, H, W, 3] -> float[N, P, width], P = (H / patch_size)^2.

Pre-norm blocks (LayerNorm, MHA, GELU MLP) and a final LayerNorm, as in big_vision's ViT without
a class token: every patch is an output token because the connector pools or projects them.
"""

import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from mmscale.models.layers import (BATCH_LENGTH_EMBED, Attention, Dtype, GeluMLP, constrain,
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
  attention: str = "xla"  # attention kernel (models/attention.py); bidirectional mask

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    width = x.shape[-1]
    h = layer_norm(name="ln_attn", **kw)(x)
    x = x + Attention(self.heads, self.heads, width // self.heads, use_bias=True,
                      kernel=self.attention, name="attn", **kw)(h)
    x = constrain(x, BATCH_LENGTH_EMBED)
    h = layer_norm(name="ln_mlp", **kw)(x)
    x = x + GeluMLP(self.mlp_dim, name="mlp", **kw)(h)
    return constrain(x, BATCH_LENGTH_EMBED)


class ViT(nn.Module):
  """Patch embedding (a stride-p conv), position embedding, `depth` blocks, final LayerNorm.

  posemb: 'learned' (a float[1, P, width] parameter) or 'sincos2d' (fixed).
  final_norm: False returns the last block's output without the final LayerNorm (what LLaVA-style
  models take from a pretrained SigLIP: its hidden states before `post_layernorm`).
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
  attention: str = "xla"  # attention kernel: xla | splash | cudnn | auto (models/attention.py)

  @property
  def grid(self) -> int:
    return self.image_size // self.patch_size

  @nn.compact
  def __call__(self, images):
    """images float[N, H, W, 3] in [-1, 1] -> float[N, P, width]."""
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    p = self.patch_size
    x = nn.Conv(self.width, (p, p), strides=(p, p), padding="VALID", name="patch_embed",
                kernel_init=partitioned(nn.initializers.lecun_normal(),
                                        (None, None, None, "embed")),  # 3 RGB channels
                bias_init=partitioned(nn.initializers.zeros_init(), ("embed",)),
                **kw)(images.astype(self.dtype))
    n = x.shape[0]
    x = x.reshape(n, -1, self.width)  # [N, P, width], row-major over the patch grid
    num_patches = x.shape[1]
    if self.posemb == "learned":
      pos = self.param("pos_embedding",
                       partitioned(nn.initializers.normal(stddev=0.02), (None, "patches", "embed")),
                       (1, num_patches, self.width), self.param_dtype)
    else:
      pos = jnp.asarray(sincos2d_posemb(self.grid, self.width))[None]
    x = constrain(x + pos.astype(self.dtype), BATCH_LENGTH_EMBED)
    for i in range(self.depth):
      x = ViTBlock(self.heads, self.mlp_dim, attention=self.attention, name=f"block_{i}",
                   **kw)(x)
    return layer_norm(name="ln_final", **kw)(x) if self.final_norm else x
