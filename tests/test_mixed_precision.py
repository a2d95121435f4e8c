"""bfloat16 compute with float32 params: the float32 products stay float32 on every backend."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_train_config
from mmscale.models.mixed_dot import einsum_accumulated, einsum_float32
from mmscale.train.trainer import train


def _dot_lines(fn, *args, platform):
  text = jax.jit(fn).trace(*args).lower(lowering_platforms=(platform,)).as_text()
  return [line for line in text.splitlines() if "dot_general" in line]


def _bf16(shape, seed):
  return jax.random.normal(jax.random.key(seed), shape, jnp.bfloat16)


def test_einsum_float32_is_float32_and_exact_for_bf16_operands():
  a, b = _bf16((4, 16, 32), 0), _bf16((32, 8), 1)
  out = jax.jit(lambda a, b: einsum_float32("btd,dv->btv", a, b))(a, b)
  assert out.dtype == jnp.float32
  want = np.einsum("btd,dv->btv", np.asarray(a, np.float32), np.asarray(b, np.float32))
  np.testing.assert_allclose(np.asarray(out), want, rtol=1e-5, atol=1e-5)
  grad = jax.grad(lambda a: einsum_float32("btd,dv->btv", a, b).sum())(a)
  assert grad.dtype == jnp.bfloat16


def test_einsum_accumulated_rounds_the_float32_product_once():
  a, b = _bf16((2, 4, 24, 16), 0), _bf16((2, 4, 24, 16), 1)
  out = jax.jit(lambda a, b: einsum_accumulated("bkqd,bksd->bkqs", a, b))(a, b)
  assert out.dtype == jnp.bfloat16
  want = np.einsum("bkqd,bksd->bkqs", np.asarray(a, np.float32), np.asarray(b, np.float32))
  np.testing.assert_allclose(np.asarray(out, np.float32), want, rtol=8e-3, atol=1e-5)


@pytest.mark.parametrize("spec, a_shape, b_shape", [
    ("bkqd,bksd->bkqs", (2, 3, 8, 4), (2, 3, 6, 4)),   # attention scores
    ("bkqs,bksd->bkqd", (2, 3, 8, 6), (2, 3, 6, 4)),   # probs . v
    ("tv,td->vd", (10, 7), (10, 5)),                   # the output matrix's gradient
    ("ij,jk->k", (3, 4), (4, 5))])                     # a summed-out index: autodiff's gradient
@pytest.mark.parametrize("product", [einsum_float32, einsum_accumulated])
def test_cpu_gradients_equal_the_float32_gradients(spec, a_shape, b_shape, product):
  a, b = _bf16(a_shape, 0), _bf16(b_shape, 1)
  cotangent = jax.random.normal(jax.random.key(2), jnp.einsum(spec, a, b).shape)
  got = jax.grad(lambda a, b: (product(spec, a, b) * cotangent).sum(), argnums=(0, 1))(a, b)
  want = jax.grad(lambda a, b: (jnp.einsum(spec, a, b) * cotangent).sum(), argnums=(0, 1))(
      a.astype(jnp.float32), b.astype(jnp.float32))
  for g, w in zip(got, want):
    assert g.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(w), rtol=3e-2, atol=3e-2)


def test_cpu_backward_products_are_bf16_with_float32_accumulation():
  """The custom VJP casts the incoming gradient to bf16: all three products of an attention
  score are bf16 x bf16 -> f32 on CPU (autodiff's would be f32 x f32)."""
  a, b = _bf16((2, 3, 8, 4), 0), _bf16((2, 3, 6, 4), 1)
  fn = jax.value_and_grad(lambda a, b: einsum_float32("bkqd,bksd->bkqs", a, b).sum(),
                          argnums=(0, 1))
  lines = _dot_lines(fn, a, b, platform="cpu")
  assert len(lines) == 3, lines
  for line in lines:
    operands, result = line.split("->")[-2:]
    assert "f32>" not in operands.split(":")[-1] and "xf32>" in result, line


def test_the_product_is_chosen_by_the_lowering_platform():
  """CPU: bf16 x bf16 -> f32, cast back for einsum_accumulated; an accelerator keeps its native
  bf16 x bf16 -> bf16 product, also when lowered on this CPU host."""
  a, b = jnp.ones((4, 8), jnp.bfloat16), jnp.ones((8, 3), jnp.bfloat16)
  fn = lambda a, b: einsum_accumulated("ij,jk->ik", a, b)
  (cpu,) = _dot_lines(fn, a, b, platform="cpu")
  (gpu,) = _dot_lines(fn, a, b, platform="cuda")
  assert "(tensor<4x8xbf16>, tensor<8x3xbf16>) -> tensor<4x3xf32>" in cpu, cpu
  assert "(tensor<4x8xbf16>, tensor<8x3xbf16>) -> tensor<4x3xbf16>" in gpu, gpu
  (gpu32,) = _dot_lines(lambda a, b: einsum_float32("ij,jk->ik", a, b), a, b, platform="cuda")
  assert "(tensor<4x8xbf16>, tensor<8x3xbf16>) -> tensor<4x3xf32>" in gpu32, gpu32


def test_operands_of_two_dtypes_are_promoted():
  a, b = _bf16((3, 4), 0), jax.random.normal(jax.random.key(1), (4, 2))
  for product in (einsum_float32, einsum_accumulated):
    out = product("ij,jk->ik", a, b)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), np.asarray(a, np.float32) @ np.asarray(b),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_bfloat16_training_runs_and_learns(tiny_world, tmp_path):
  config = tiny_train_config(tiny_world, steps=16, checkpoint_every=16)
  config.model.dtype = "bfloat16"
  workdir = str(tmp_path / "bf16")
  ctx = train(config, workdir)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    loss = {row["step"]: row["loss"] for row in map(json.loads, f)}
  assert all(np.isfinite(v) for v in loss.values()), loss
  first, last = np.mean([loss[s] for s in (1, 2, 3)]), np.mean([loss[s] for s in (14, 15, 16)])
  assert last < 0.85 * first, (first, last)
  # parameters stay float32 (param_dtype), only compute is bf16
  assert {x.dtype for x in jax.tree.leaves(ctx.state.params)} == {jnp.dtype(jnp.float32)}
