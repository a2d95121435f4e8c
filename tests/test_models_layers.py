"""Building blocks: the cumsum attention-mask rule, RoPE, GQA attention, adaptive pooling."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from mmscale.models.connectors import adaptive_pool_matrix
from mmscale.models.attention import make_attention_mask
from mmscale.models.layers import Attention, apply_rope, dense
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


def _fusions_computing(text: str, opcode: str) -> list[str]:
  """The result shapes of the fused computations of compiled HLO `text` that contain `opcode`."""
  shapes = []
  for block in text.split("\n\n"):
    header = block.lstrip().splitlines()[0] if block.strip() else ""
    if f" {opcode}(" in block and "->" in header:
      shapes.append(header.split("->")[-1].strip(" {"))
  return shapes


def test_rope_tables_are_computed_once_not_per_head():
  """On CPU sin and cos are evaluated over the float32[B, T, 1, Dh/2] tables only, not fused into
  the per-head product (where XLA would evaluate them for every head and both halves), and the
  values are those of the plain formula."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 8, 4, 16)), jnp.bfloat16)
  positions = jnp.asarray(rng.integers(0, 100, size=(2, 8)), jnp.int32)
  fn = jax.jit(lambda x, p: apply_rope(x, p, 1e4))
  shapes = _fusions_computing(fn.lower(x, positions).compile().as_text(), "sine")
  assert shapes and all("[2,8,4," not in shape for shape in shapes), shapes
  angle = np.asarray(positions, np.float64)[:, :, None, None] / 1e4 ** (np.arange(8) / 8)
  x1, x2 = np.split(np.asarray(x, np.float64), 2, axis=-1)
  want = np.concatenate([x1 * np.cos(angle) - x2 * np.sin(angle),
                         x2 * np.cos(angle) + x1 * np.sin(angle)], axis=-1)
  np.testing.assert_allclose(np.asarray(fn(x, positions), np.float32), want, rtol=1e-2,
                             atol=1e-2)


def test_bias_gradients_are_float32_sums_in_bf16():
  """A bf16 dense layer's bias gradient is a float32 sum over the tokens (XLA's CPU backend runs
  a bf16 sum as a much slower reduce-window) and equals the float32 gradient."""
  layer = dense(6, ("embed", "mlp"), use_bias=True, dtype=jnp.bfloat16)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 40, 5)), jnp.bfloat16)
  params = nn.meta.unbox(nn.Module.init(layer, jax.random.key(0), x))  # .init is a field there
  grad_bias = lambda x: jax.grad(  # noqa: E731
      lambda p: jnp.sum(layer.apply(p, x).astype(jnp.float32) ** 2))(params)["params"]["bias"]
  hlo = jax.jit(grad_bias).lower(x).as_text(dialect="hlo")
  assert not [line for line in hlo.splitlines() if "bf16" in line.split("reduce(")[0]
              and " reduce(" in line], hlo
  want = jax.grad(lambda p: jnp.sum(layer.apply(p, x.astype(jnp.float32)) ** 2))(params)
  np.testing.assert_allclose(np.asarray(grad_bias(x)), np.asarray(want["params"]["bias"]),
                             rtol=5e-2, atol=5e-2)
