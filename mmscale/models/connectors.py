"""Connectors: ViT patch features float[N, P, width_in] -> image tokens float[N, K, out_dim].

A registry (`@register_connector(name)`, `get_connector(name)`) instead of an if-chain. Every
connector class takes the same fields, and carries two class-level helpers so that its rules and
its cost live next to its architecture:
- `check(num_patches, num_tokens) -> str | None`: why this K cannot be built from P patches;
- `macs(num_patches, width_in, num_tokens, hidden_dim, out_dim, depth) -> int`: forward
  multiply-accumulates per image (used by `flops.py`).
MM1 found the connector type matters little next to image resolution and K; these cover its
options (plain MLP, average pooling, attention pooling, C-Abstractor).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from mmscale.models.layers import (BATCH_LENGTH_EMBED, Dtype, GeluMLP, constrain, dense,
                                   layer_norm, partitioned)
from mmscale.models.mixed_dot import einsum_accumulated, einsum_float32
from mmscale.registry import Registry

CONNECTORS: Registry[type] = Registry("connector")
register_connector = CONNECTORS.register  # class decorator: `model.connector.name = name`
get_connector = CONNECTORS.get  # unknown names raise, listing the known ones
connector_names = CONNECTORS.names


def _square_side(num_patches: int, num_tokens: int) -> str | int:
  """side s of an s x s token grid, or the reason K cannot be pooled from the P-patch grid."""
  s = math.isqrt(num_tokens)
  g = math.isqrt(num_patches)
  if num_tokens <= 0 or s * s != num_tokens:
    return f"must be a perfect square (got {num_tokens})"
  if s > g:
    return f"{num_tokens} tokens exceed the {g}x{g} patch grid"
  return s


def adaptive_pool_matrix(grid: int, side: int) -> np.ndarray:
  """float32[side, grid] averaging weights of PyTorch-style adaptive average pooling (1-D).

  Bin i covers [floor(i*g/s), ceil((i+1)*g/s)); applied on rows and columns it pools any g x g
  grid to s x s, also when s does not divide g.
  """
  a = np.zeros((side, grid), np.float32)
  for i in range(side):
    lo, hi = (i * grid) // side, -((-(i + 1) * grid) // side)
    a[i, lo:hi] = 1.0 / (hi - lo)
  return a


def adaptive_avg_pool(x: jax.Array, side: int) -> jax.Array:
  """float[N, g, g, C] -> float[N, side, side, C]."""
  a = jnp.asarray(adaptive_pool_matrix(x.shape[1], side), x.dtype)
  return jnp.einsum("ig,jh,nghc->nijc", a, a, x)


class Connector(nn.Module):
  """Fields shared by every connector (unused ones are ignored by a given type)."""
  num_tokens: int
  hidden_dim: int
  out_dim: int
  num_heads: int = 4
  depth: int = 2
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @classmethod
  def check(cls, num_patches: int, num_tokens: int) -> str | None:
    return None

  def _kw(self):
    return dict(dtype=self.dtype, param_dtype=self.param_dtype)


@register_connector("mlp")
class MLPConnector(Connector):
  """Two-layer GELU MLP per patch (LLaVA-1.5): K = P, no compression."""

  @classmethod
  def check(cls, num_patches, num_tokens):
    if num_tokens != num_patches:
      return f"the mlp connector keeps every patch, so it must equal P = {num_patches}"
    return None

  @staticmethod
  def macs(num_patches, width_in, num_tokens, hidden_dim, out_dim, depth):
    return num_patches * (width_in * hidden_dim + hidden_dim * out_dim)

  @nn.compact
  def __call__(self, x):
    y = GeluMLP(self.hidden_dim, out_dim=self.out_dim, name="mlp", **self._kw())(x)
    return constrain(y, BATCH_LENGTH_EMBED)


@register_connector("avgpool")
class AvgPoolConnector(Connector):
  """Adaptive average pooling of the patch grid to sqrt(K) x sqrt(K), then a linear map."""

  @classmethod
  def check(cls, num_patches, num_tokens):
    side = _square_side(num_patches, num_tokens)
    return side if isinstance(side, str) else None

  @staticmethod
  def macs(num_patches, width_in, num_tokens, hidden_dim, out_dim, depth):
    return num_patches * width_in + num_tokens * width_in * out_dim

  @nn.compact
  def __call__(self, x):
    n, p, c = x.shape
    g, s = math.isqrt(p), math.isqrt(self.num_tokens)
    pooled = adaptive_avg_pool(x.reshape(n, g, g, c), s).reshape(n, s * s, c)
    y = dense(self.out_dim, ("embed", "mlp"), use_bias=True, name="proj", **self._kw())(pooled)
    return constrain(y, BATCH_LENGTH_EMBED)


@register_connector("attnpool")
class AttnPoolConnector(Connector):
  """K learned queries cross-attend to the patches (num_heads heads), then LN + GELU MLP."""

  @classmethod
  def check(cls, num_patches, num_tokens):
    return None if num_tokens > 0 else f"must be positive (got {num_tokens})"

  @staticmethod
  def macs(num_patches, width_in, num_tokens, hidden_dim, out_dim, depth):
    proj = (2 * num_tokens + 2 * num_patches) * width_in * width_in
    attend = 2 * num_tokens * num_patches * width_in
    return proj + attend + num_tokens * (width_in * hidden_dim + hidden_dim * out_dim)

  @nn.compact
  def __call__(self, x):
    n, _, c = x.shape
    h, dh = self.num_heads, c // self.num_heads
    kw = dict(self._kw(), use_bias=True)
    queries = self.param("queries", partitioned(nn.initializers.normal(0.02), (None, "embed")),
                         (self.num_tokens, c), self.param_dtype)
    q = dense((h, dh), ("embed", "heads", "kv"), name="query", **kw)(
        jnp.broadcast_to(queries.astype(self.dtype), (n, self.num_tokens, c)))
    k = dense((h, dh), ("embed", "heads", "kv"), name="key", **kw)(x)
    v = dense((h, dh), ("embed", "heads", "kv"), name="value", **kw)(x)
    scores = einsum_float32("nqhd,nphd->nhqp", q, k) * dh ** -0.5
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    att = einsum_accumulated("nhqp,nphd->nqhd", probs, v)
    y = dense(c, ("heads", "kv", "embed"), axis=(-2, -1), name="out", **kw)(att)
    y = layer_norm(name="ln", **self._kw())(y)
    y = GeluMLP(self.hidden_dim, out_dim=self.out_dim, name="mlp", **self._kw())(y)
    return constrain(y, BATCH_LENGTH_EMBED)


class ResConvBlock(nn.Module):
  """x + conv1x1(gelu(conv3x3(LN(x)))) on a float[N, g, g, C] grid (a plain ResNet-style block)."""
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    conv = lambda k, name: nn.Conv(  # noqa: E731
        c, (k, k), padding="SAME", name=name, **kw,
        kernel_init=partitioned(nn.initializers.lecun_normal(),
                                (None, None, "conv_in", "conv_out")),
        bias_init=partitioned(nn.initializers.zeros_init(), ("conv_out",)))
    h = layer_norm(name="ln", **kw)(x)
    h = nn.gelu(conv(3, "conv3x3")(h))
    return x + conv(1, "conv1x1")(h)

  @staticmethod
  def macs(positions, channels):
    return positions * 10 * channels * channels  # 3x3 (9 C^2) + 1x1 (C^2) per position


@register_connector("cabstractor")
class CAbstractor(Connector):
  """MM1 / Honeybee C-Abstractor: locality-preserving convolutional resampler.

  proj_in (width_in -> hidden) -> `depth` residual conv blocks on the g x g patch grid ->
  adaptive average pooling to sqrt(K) x sqrt(K) -> `depth` more blocks -> GELU MLP readout to
  out_dim. Convolutions keep spatial locality that attention pooling loses.
  """

  @classmethod
  def check(cls, num_patches, num_tokens):
    side = _square_side(num_patches, num_tokens)
    return side if isinstance(side, str) else None

  @staticmethod
  def macs(num_patches, width_in, num_tokens, hidden_dim, out_dim, depth):
    blocks = depth * (ResConvBlock.macs(num_patches, hidden_dim)
                      + ResConvBlock.macs(num_tokens, hidden_dim))
    readout = num_tokens * (hidden_dim * out_dim + out_dim * out_dim)
    return num_patches * width_in * hidden_dim + blocks + readout

  @nn.compact
  def __call__(self, x):
    n, p, _ = x.shape
    g, s = math.isqrt(p), math.isqrt(self.num_tokens)
    kw = self._kw()
    h = dense(self.hidden_dim, ("embed", "mlp"), use_bias=True, name="proj_in", **kw)(x)
    h = h.reshape(n, g, g, self.hidden_dim)
    for i in range(self.depth):
      h = ResConvBlock(name=f"stage1_{i}", **kw)(h)
    h = adaptive_avg_pool(h, s)
    for i in range(self.depth):
      h = ResConvBlock(name=f"stage2_{i}", **kw)(h)
    h = h.reshape(n, s * s, self.hidden_dim)
    h = dense(self.out_dim, ("mlp", "embed"), use_bias=True, name="readout_1", **kw)(h)
    y = dense(self.out_dim, ("mlp", "embed"), use_bias=True, name="readout_2", **kw)(nn.gelu(h))
    return constrain(y, BATCH_LENGTH_EMBED)
