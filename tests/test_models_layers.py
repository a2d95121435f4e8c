"""Building blocks: the cumsum attention-mask rule, RoPE, GQA attention, adaptive pooling."""

import jax
import jax.numpy as jnp
import numpy as np

from mmscale.models.connectors import adaptive_pool_matrix
from mmscale.models.attention import make_attention_mask
from mmscale.models.layers import Attention, apply_rope
from mmscale.testing import numpy_init


def test_mask_rule_prefix_causal_and_segments():
  # segment 1: [img, img, img, txt, txt]; segment 2: [txt, txt]; then padding
  seg = jnp.array([[1, 1, 1, 1, 1, 2, 2, 0]])
  ar = jnp.array([[1, 0, 0, 1, 1, 1, 1, 0]])
  m = np.asarray(make_attention_mask(seg, ar)[0])
  np.testing.assert_array_equal(m[:3, :3], np.ones((3, 3), bool))  # image block bidirectional
  assert m[3, :4].all() and not m[3, 4]  # text after the image: causal, sees the whole image
  assert not m[:5, 5:].any() and not m[5:7, :5].any()  # segments isolated
  assert m[6, 5] and not m[5, 6]
  assert not m[:7, 7].any() and m[7, 7]  # padding only sees padding (no empty rows)


def test_rope_depends_on_relative_position_only():
  rng = np.random.default_rng(0)
  q = jnp.asarray(rng.normal(size=(1, 1, 1, 16)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(1, 1, 1, 16)), jnp.float32)
  dot = lambda i, j: float(jnp.sum(apply_rope(q, jnp.array([[i]]), 1e4)  # noqa: E731
                                   * apply_rope(k, jnp.array([[j]]), 1e4)))
  np.testing.assert_allclose(dot(5, 2), dot(13, 10), rtol=1e-5)
  assert abs(dot(5, 2) - dot(5, 4)) > 1e-4


def test_gqa_equals_mha_with_repeated_kv_heads():
  x = np.random.default_rng(0).normal(size=(2, 6, 32)).astype(np.float32)
  gqa = Attention(num_heads=4, num_kv_heads=2, head_dim=8, rope_theta=1e4)
  mha = Attention(num_heads=4, num_kv_heads=4, head_dim=8, rope_theta=1e4)
  pos = jnp.tile(jnp.arange(6), (2, 1))
  ar = jnp.ones((2, 6), jnp.int32)
  p = numpy_init(gqa, x, 1, positions=pos, mask_ar=ar)["params"]
  rep = lambda b: b.replace_boxed(jnp.repeat(b.unbox(), 2, axis=1))  # noqa: E731
  p_mha = dict(p, key={"kernel": rep(p["key"]["kernel"])},
               value={"kernel": rep(p["value"]["kernel"])})
  run = jax.jit(lambda m, v: m.apply({"params": v}, x, pos, None, ar), static_argnums=0)
  np.testing.assert_allclose(run(gqa, p), run(mha, p_mha), atol=1e-5)


def test_adaptive_pool_matrix_rows_average():
  a = adaptive_pool_matrix(5, 2)  # bins [0, 3) and [2, 5)
  np.testing.assert_allclose(a.sum(1), 1.0)
  np.testing.assert_allclose(a[0], [1 / 3, 1 / 3, 1 / 3, 0, 0], rtol=1e-6)
  np.testing.assert_allclose(adaptive_pool_matrix(4, 2), [[.5, .5, 0, 0], [0, 0, .5, .5]])
