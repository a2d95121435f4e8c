"""Attention kernels equal the XLA reference: splash in Pallas interpret mode (the kernel code that
runs on TPU, interpreted on CPU), cuDNN's argument mapping through `jax.nn.dot_product_attention`,
on packed rows with padding, GQA, each mask rule, values and gradients, and under a mesh."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax.sharding import AxisType

from mmscale import config as config_lib
from mmscale.errors import ConfigError
from mmscale.models import attention as attn
from mmscale.models.registry import validate_model_config
from mmscale.parallel.rules import DEFAULT_RULES, logical_rules

B, T, H, KV, DH = 2, 150, 4, 2, 32  # T pads to 256 inside splash: two 128 blocks


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  q, k, v = (jnp.asarray(rng.normal(size=(B, T, n, DH)), jnp.float32) for n in (H, KV, KV))
  segment_ids = np.ones((B, T), np.int32)
  segment_ids[0, 70:] = 2        # two packed examples
  segment_ids[1, 120:] = 0       # right padding
  mask_ar = np.ones((B, T), np.int32)
  mask_ar[:, 2:20] = 0           # an image block (bidirectional) ...
  mask_ar[0, 71:100] = 0         # ... and one in the second packed example
  return q, k, v, jnp.asarray(segment_ids), jnp.asarray(mask_ar)


def _loss(kernel, kind, implementation=None):
  def f(q, k, v, segment_ids, mask_ar):
    if implementation is None:
      out = attn.attend(q, k, v, segment_ids, mask_ar, kind=kind, kernel=kernel)
    else:
      out = attn.cudnn_attention(q, k, v, segment_ids, mask_ar, kind=kind, platform="cpu",
                                 implementation=implementation)
    weights = jnp.cos(jnp.arange(out.size, dtype=jnp.float32)).reshape(out.shape)
    real = (segment_ids != 0)[:, :, None, None]  # padding rows carry no loss
    return jnp.sum(jnp.where(real, out * weights, 0.0)), out
  return f


def _value_and_grads(f, inputs):
  (_, out), grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))(*inputs)
  return out, grads


@pytest.mark.parametrize("kind", attn.MASK_KINDS)
def test_splash_equals_the_reference_in_values_and_gradients(kind):
  inputs = _inputs()
  out_ref, grads_ref = _value_and_grads(_loss("xla", kind), inputs)
  out, grads = _value_and_grads(_loss("splash", kind), inputs)
  real = np.asarray(inputs[3] != 0)
  np.testing.assert_allclose(np.asarray(out)[real], np.asarray(out_ref)[real], atol=2e-5)
  for g, g_ref in zip(grads, grads_ref):
    np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), atol=2e-4)


@pytest.mark.parametrize("kind", attn.MASK_KINDS)
def test_cudnn_call_passes_the_mask_rule_exactly(kind):
  # The cuDNN path's arguments run through XLA's implementation of the same API call.
  inputs = _inputs(1)
  out_ref, grads_ref = _value_and_grads(_loss("xla", kind), inputs)
  out, grads = _value_and_grads(_loss(None, kind, implementation="xla"), inputs)
  np.testing.assert_allclose(np.asarray(out), np.asarray(out_ref), atol=1e-5)
  for g, g_ref in zip(grads, grads_ref):
    np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), atol=1e-4)


def test_the_mask_rules_differ_where_they_should():
  *_, segment_ids, mask_ar = _inputs()
  masks = {k: np.asarray(attn.mask_for_kind(segment_ids, mask_ar, k)) for k in attn.MASK_KINDS}
  # image token 5 sees image token 10 (same block) only under the prefix and bidirectional rules
  assert masks["prefix"][0, 5, 10] and masks["bidirectional"][0, 5, 10]
  assert not masks["causal"][0, 5, 10]
  # a text token never sees a later text token under prefix; packed examples never see each other
  assert not masks["prefix"][0, 30, 31] and not masks["prefix"][0, 80, 10]


def test_splash_under_a_mesh_splits_batch_and_heads():
  mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"), axis_types=(AxisType.Auto,) * 3)
  rng = np.random.default_rng(2)
  q, k, v = (jnp.asarray(rng.normal(size=(4, 40, n, DH)), jnp.float32) for n in (4, 2, 2))
  segment_ids = jnp.ones((4, 40), jnp.int32)
  mask_ar = jnp.asarray(np.r_[1, 0, 0, 0, 0, [1] * 35][None].repeat(4, 0), jnp.int32)
  ref = attn.attend(q, k, v, segment_ids, mask_ar, kind="prefix", kernel="xla")
  rules = logical_rules(DEFAULT_RULES)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    fn = jax.jit(functools.partial(attn.attend, kind="prefix", kernel="splash"))
    lowered = fn.lower(q, k, v, segment_ids, mask_ar)
    out = fn(q, k, v, segment_ids, mask_ar)
  assert "shard_map" in lowered.as_text() or "manual" in lowered.as_text()
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=2e-5)


def test_auto_picks_the_platform_kernel():
  assert attn.resolve_kernel("auto", "tpu", jnp.float32) == "splash"
  assert attn.resolve_kernel("auto", "gpu", jnp.bfloat16) == "cudnn"
  assert attn.resolve_kernel("auto", "gpu", jnp.float32) == "xla"  # cuDNN has no float32
  assert attn.resolve_kernel("auto", "cpu", jnp.bfloat16) == "xla"
  assert attn.resolve_kernel("splash", "cpu", jnp.float32) == "splash"  # interpret mode


@pytest.mark.parametrize("overrides, words", [
    ({"attention": "flash"}, "unknown attention kernel 'flash'"),
    ({"attention": "cudnn"}, "'cudnn' computes in bfloat16 or float16"),
])
def test_bad_kernel_choices_name_the_field(overrides, words):
  model = config_lib.base_config().model
  model.update(overrides)
  with pytest.raises(ConfigError, match=words) as info:
    validate_model_config(model)
  assert "model.attention" in str(info.value)


def test_cudnn_off_gpu_is_a_config_error():
  q, k, v, segment_ids, mask_ar = _inputs()
  with pytest.raises(ConfigError, match="'cudnn' needs a GPU"):
    attn.attend(q.astype(jnp.bfloat16), k, v, segment_ids, mask_ar, kind="causal",
                kernel="cudnn")
