"""The dense product's CPU weight gradient equals autodiff's; accelerators keep the plain dot."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmscale.models import dense_contract

SHAPES = [((2, 5, 4), (4, 6), 1),        # [B, T, D] . [D, F]: MLPs
          ((2, 5, 3, 4), (3, 4, 6), 2),  # [B, T, H, Dh] . [H, Dh, D]: attention out-projection
          ((2, 5, 4), (4, 3, 2), 1),     # [B, T, D] . [D, H, Dh]: q/k/v projections
          ((7, 4), (4, 6), 1)]           # one token axis


@pytest.mark.parametrize("x_shape, k_shape, num_in", SHAPES)
def test_cpu_gradient_equals_autodiff(x_shape, k_shape, num_in):
  x = jax.random.normal(jax.random.key(0), x_shape)
  kernel = jax.random.normal(jax.random.key(1), k_shape)
  cotangent = jax.random.normal(jax.random.key(2), x_shape[:-num_in] + k_shape[num_in:])

  def grads(fn):
    y, vjp = jax.vjp(lambda a, b: fn(a, b, num_in), x, kernel)
    return (y,) + vjp(cotangent)

  for got, want in zip(grads(dense_contract._cpu_contract), grads(dense_contract._plain)):
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


def _primitives(platform, monkeypatch):
  monkeypatch.setattr(dense_contract, "current_platform", lambda: platform)
  x, kernel = jnp.ones((2, 3, 4)), jnp.ones((4, 5))
  jaxpr = jax.make_jaxpr(lambda k: dense_contract.contract(x, k, 1))(kernel)
  return {str(eqn.primitive) for eqn in jaxpr.jaxpr.eqns}


def test_custom_gradient_only_when_tracing_for_cpu(monkeypatch):
  cpu = _primitives("cpu", monkeypatch)
  assert any("custom_vjp" in p for p in cpu), cpu
  for platform in ("tpu", "gpu"):
    other = _primitives(platform, monkeypatch)
    assert not any("custom_vjp" in p for p in other) and "dot_general" in other, other


@pytest.mark.parametrize("x_shape, k_shape, num_in", SHAPES)
def test_cpu_bfloat16_products_accumulate_in_float32(x_shape, k_shape, num_in):
  """In bf16 the three CPU products are bf16 x bf16 -> float32, cast back to bf16: the values are
  the float32 products of the bf16 operands, rounded once."""
  x = jax.random.normal(jax.random.key(0), x_shape, jnp.bfloat16)
  kernel = jax.random.normal(jax.random.key(1), k_shape, jnp.bfloat16)
  cotangent = jax.random.normal(jax.random.key(2), x_shape[:-num_in] + k_shape[num_in:],
                                jnp.bfloat16)

  def grads(fn, *args):
    y, vjp = jax.vjp(lambda a, b: fn(a, b, num_in), *args)
    return (y,) + vjp(cotangent.astype(y.dtype))

  got = grads(dense_contract._cpu_contract, x, kernel)
  want = grads(dense_contract._plain, x.astype(jnp.float32), kernel.astype(jnp.float32))
  for g, w in zip(got, want):
    assert g.dtype == jnp.bfloat16 and g.shape == w.shape
    np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(w), rtol=1e-2, atol=1e-2)
  lowered = jax.jit(lambda a, b: grads(dense_contract._cpu_contract, a, b)).lower(x, kernel)
  dots = [line for line in lowered.as_text().splitlines() if "dot_general" in line]
  assert len(dots) == 3 and all("bf16>" in d.split("->")[0] and "xf32>" in d.split("->")[-1]
                                for d in dots), dots
