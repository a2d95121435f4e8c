"""bfloat16 compute with float32 params: the float32 products stay float32 on every backend."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_train_config
from mmscale.models.mixed_dot import einsum_float32
from mmscale.train.trainer import train


def _dot_lines(fn, *args, platform):
  text = jax.jit(fn).trace(*args).lower(lowering_platforms=(platform,)).as_text()
  return [line for line in text.splitlines() if "dot_general" in line]


def test_einsum_float32_is_float32_and_exact_for_bf16_operands():
  a = jax.random.normal(jax.random.key(0), (4, 16, 32), jnp.bfloat16)
  b = jax.random.normal(jax.random.key(1), (32, 8), jnp.bfloat16)
  out = jax.jit(lambda a, b: einsum_float32("btd,dv->btv", a, b))(a, b)
  assert out.dtype == jnp.float32
  want = np.einsum("btd,dv->btv", np.asarray(a, np.float32), np.asarray(b, np.float32))
  np.testing.assert_allclose(np.asarray(out), want, rtol=1e-5, atol=1e-5)
  grad = jax.grad(lambda a: einsum_float32("btd,dv->btv", a, b).sum())(a)
  assert grad.dtype == jnp.bfloat16


def test_the_product_is_chosen_by_the_lowering_platform():
  """CPU gets float32 operands (its runtime has no bf16 x bf16 -> f32 dot); an accelerator keeps
  bf16 operands with a float32 result, also when lowered on this CPU host."""
  a, b = jnp.ones((4, 8), jnp.bfloat16), jnp.ones((8, 3), jnp.bfloat16)
  fn = lambda a, b: einsum_float32("ij,jk->ik", a, b)
  (cpu,) = _dot_lines(fn, a, b, platform="cpu")
  (gpu,) = _dot_lines(fn, a, b, platform="cuda")
  assert "(tensor<4x8xf32>, tensor<8x3xf32>) -> tensor<4x3xf32>" in cpu, cpu
  assert "(tensor<4x8xbf16>, tensor<8x3xbf16>) -> tensor<4x3xf32>" in gpu, gpu


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
