"""The CPU attention core (flash attention's backward pass) equals autodiff of the reference, in
values and gradients, with GQA, padding, packing and a key axis longer than the queries; in bf16
its products are bf16 x bf16 -> float32; and it is what the reference runs on CPU in bf16 only."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmscale.models import attention as attn
from mmscale.models.softmax_attend_cpu import softmax_attend


def _inputs(t, s, groups, seed=0):
  rng = np.random.default_rng(seed)
  b, kv, dh = 2, 2, 16
  q = jnp.asarray(rng.normal(size=(b, t, kv, groups, dh)), jnp.float32)
  k, v = (jnp.asarray(rng.normal(size=(b, s, kv, dh)), jnp.float32) for _ in range(2))
  segment_ids = np.ones((b, s), np.int32)
  segment_ids[0, s // 2:] = 2      # two packed examples
  segment_ids[1, s - 3:] = 0       # padding: only sees padding, so no row is empty
  mask_ar = np.ones((b, s), np.int32)
  mask_ar[:, 2:6] = 0              # a bidirectional block
  mask = attn.make_attention_mask(jnp.asarray(segment_ids), jnp.asarray(mask_ar))[:, s - t:]
  cotangent = jnp.asarray(rng.normal(size=q.shape), jnp.float32)
  return q, k, v, mask, cotangent


def _value_and_grads(core, q, k, v, cotangent):
  out, pullback = jax.vjp(core, q, k, v)
  return (out, *pullback(cotangent.astype(out.dtype)))


def _reference(q, k, v, mask, scale):
  """Autodiff of the reference formula, in float32 (the dispatch keeps float32 on it)."""
  return attn.masked_softmax_attend(q, k, v, mask, scale=scale)


@pytest.mark.parametrize("t,s,groups", [(12, 12, 1), (12, 12, 2), (4, 12, 2)])
def test_values_and_gradients_equal_autodiff_of_the_reference(t, s, groups):
  q, k, v, mask, cotangent = _inputs(t, s, groups)
  scale = 0.3
  got = _value_and_grads(lambda q, k, v: softmax_attend(q, k, v, mask, scale), q, k, v,
                         cotangent)
  want = _value_and_grads(lambda q, k, v: _reference(q, k, v, mask, scale), q, k, v, cotangent)
  for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=2e-5, atol=2e-5,
                               err_msg=name)


def test_bf16_is_close_to_float32_and_its_products_are_bf16_with_float32_results():
  q, k, v, mask, cotangent = _inputs(12, 12, 2)
  bf16 = [x.astype(jnp.bfloat16) for x in (q, k, v)]
  core = lambda q, k, v: softmax_attend(q, k, v, mask, 0.25)
  got = _value_and_grads(core, *bf16, cotangent)
  want = _value_and_grads(lambda q, k, v: _reference(q, k, v, mask, 0.25),
                          *[x.astype(jnp.float32) for x in bf16], cotangent)
  for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
    assert g.dtype == jnp.bfloat16, name
    np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(w), rtol=5e-2, atol=5e-2,
                               err_msg=name)
  text = jax.jit(lambda *a: _value_and_grads(core, *a, cotangent)).lower(*bf16).as_text()
  dots = [line for line in text.splitlines() if "dot_general" in line]
  assert len(dots) == 6, dots  # forward 2, backward 4
  for line in dots:
    operands, result = line.split("->")[-2:]
    assert "f32>" not in operands.split(":")[-1] and "xf32>" in result, line


def test_the_reference_takes_the_cpu_core_in_bf16_on_cpu_only(monkeypatch):
  calls = []
  monkeypatch.setattr(attn.softmax_attend_cpu, "softmax_attend",
                      lambda *a: calls.append(a) or softmax_attend(*a))
  q, k, v, mask, _ = _inputs(8, 8, 1)

  def uses_the_cpu_core(dtype, logit_softcap=0.0) -> bool:
    calls.clear()
    attn.masked_softmax_attend(*(x.astype(dtype) for x in (q, k, v)), mask,
                               logit_softcap=logit_softcap)
    return bool(calls)

  assert jax.default_backend() == "cpu"
  assert uses_the_cpu_core(jnp.bfloat16)
  assert not uses_the_cpu_core(jnp.float32)
  assert not uses_the_cpu_core(jnp.bfloat16, logit_softcap=50.0)  # Gemma 2 keeps autodiff
