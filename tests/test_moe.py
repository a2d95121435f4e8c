"""Mixture-of-experts decoder: dispatch equals a dense computation, capacity drops are counted,
routing is deterministic, expert parallelism (x fsdp x tensor) equals one device."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from mmscale import config as config_lib
from mmscale.config import base_config
from mmscale.errors import ConfigError
from mmscale.models import flops as flops_lib
from mmscale.models import moe as moe_lib
from mmscale.models.registry import build_model, validate_model_config
from mmscale.parallel import rules as sharding_rules
from mmscale.spec import validate
from mmscale.testing import synthetic_batch, tiny_model_config, train_step_for

SETTINGS = moe_lib.MoESettings(num_experts=4, experts_per_token=2, mlp_dim=32)


def _block_params(settings, seed=0, width=16):
  x = jax.random.normal(jax.random.key(seed + 100), (2, 8, width))
  block = moe_lib.MoEBlock(settings)
  params = block.init(jax.random.key(seed), x)["params"]
  return block, nn.meta.unbox(params), x


@pytest.mark.parametrize("dispatch", ["dropless", "capacity"])
def test_dispatch_equals_dense_computation_of_the_same_routing(dispatch):
  # capacity_factor E/k: room for every token even if all pick one expert, so nothing drops
  settings = moe_lib.MoESettings(4, 2, 32, dispatch=dispatch, capacity_factor=2.0)
  block, params, x = _block_params(settings)
  y, state = block.apply({"params": params}, x, mutable=["moe"])
  expected = moe_lib.dense_reference(x, params, params["router"], settings)
  np.testing.assert_allclose(y, expected, atol=1e-5, rtol=1e-5)
  assert float(state["moe"]["stats"][0]["dropped"]) == 0.0
  grad = jax.grad(lambda p: jnp.sum(block.apply({"params": p}, x, mutable=["moe"])[0] ** 2))
  grad_ref = jax.grad(lambda p: jnp.sum(moe_lib.dense_reference(x, p, p["router"], settings) ** 2))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4),
               grad(params), grad_ref(params))


def test_capacity_dispatch_fills_first_choices_first_and_counts_drops():
  # one row, 4 tokens, top-2: every first choice is expert 0, every second choice expert 1
  experts = jnp.array([[[0, 1], [0, 1], [0, 1], [0, 2]]], jnp.int32)
  _, slots, kept = moe_lib.capacity_slots(experts, num_experts=3, capacity=2)
  np.testing.assert_array_equal(kept[0], [[1, 1], [1, 1], [0, 0], [0, 1]])
  np.testing.assert_array_equal(jnp.argmax(slots[0, :, 1], -1)[:2], [0, 1])
  settings = moe_lib.MoESettings(4, 2, 32, dispatch="capacity", capacity_factor=0.25)
  block, params, x = _block_params(settings)
  _, state = block.apply({"params": params}, x, mutable=["moe"])
  # C = ceil(2 * 8 * 0.25 / 4) = 1 slot per expert and row: at most 4 of 16 copies kept per row
  assert float(state["moe"]["stats"][0]["dropped"]) >= 0.75


def test_routing_is_deterministic_for_a_seed():
  settings = moe_lib.MoESettings(8, 2, 32)
  outs = []
  for seed in (0, 0, 1):
    block, params, x = _block_params(settings, seed=seed)
    logits = jnp.einsum("btd,de->bte", x, params["router"]).reshape(-1, 8)
    outs.append(moe_lib.route(logits, 2, True)[1])
  np.testing.assert_array_equal(outs[0], outs[1])
  assert not np.array_equal(outs[0], outs[2])
  # ties go to the lower expert index
  _, experts, _ = moe_lib.route(jnp.zeros((1, 4)), 2, True)
  np.testing.assert_array_equal(experts, [[0, 1]])


def _moe_config(mesh_shape, dispatch="dropless", scan=True):
  c = base_config()
  tiny = tiny_model_config()
  for part in ("vit", "connector", "decoder"):
    c.model[part].update(tiny[part])
  c.model.vit.depth = 1
  c.model.decoder.update(depth=2, moe_every=2, num_experts=4, experts_per_token=2,
                         moe_mlp_dim=64, moe_dispatch=dispatch, scan_layers=scan)
  c.data.seq_len, c.data.max_images_per_seq, c.data.batch_size = 32, 1, 8
  c.mesh.shape = mesh_shape
  return c


def _one_step(mesh_shape, **kw):
  config = _moe_config(mesh_shape, **kw)
  devices = jax.devices()[:1] if mesh_shape == {} else jax.devices()
  step, state, mesh, rules = train_step_for(config, devices)
  batch = synthetic_batch(config.model, batch=8, seq_len=32)
  with jax.set_mesh(mesh):
    state, metrics = step(state, sharding_rules.global_batch(batch, mesh, rules))
  return jax.device_get(metrics), jax.device_get(state.params), state


@pytest.fixture(scope="module")
def single_device():
  return {d: _one_step({}, dispatch=d) for d in ("dropless", "capacity")}


@pytest.mark.parametrize("dispatch,mesh_shape", [
    ("dropless", {"data": 2, "expert": 4}),
    ("dropless", {"fsdp": 2, "tensor": 2, "expert": 2, "data": 1}),
    ("capacity", {"data": 1, "fsdp": 4, "expert": 2}),
])
@pytest.mark.slow
def test_expert_parallel_step_equals_single_device(single_device, dispatch, mesh_shape):
  ref_metrics, ref_params, _ = single_device[dispatch]
  metrics, params, state = _one_step(mesh_shape, dispatch=dispatch)
  for key in ("loss", "grad_norm", "moe_load_balance_loss", "moe_router_z_loss",
              "moe_dropped_fraction", "moe_load_max"):
    assert metrics[key] == pytest.approx(ref_metrics[key], rel=1e-4, abs=1e-6), key
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4),
               params, ref_params)  # one step of Adam: the gradients agree too
  experts = state.params["decoder"]["layers"]["block_1"]["mlp"]["wi_gate"]
  assert experts.sharding.shard_shape(experts.shape)[1] == 4 // mesh_shape["expert"]


def test_moe_metrics_and_aux_loss_in_the_step(single_device):
  metrics, _, _ = single_device["dropless"]
  assert metrics["moe_dropped_fraction"] == 0.0
  assert 0.5 < metrics["moe_load_balance_loss"] < 4.0  # E * sum f P: 1.0 when uniform
  assert metrics["moe_load_max"] >= 1.0 >= metrics["moe_load_min"]
  assert single_device["capacity"][0]["moe_dropped_fraction"] > 0.0  # capacity 1.25 drops some


def test_scanned_and_unscanned_moe_decoders_agree():
  config = _moe_config({})
  batch = jax.tree.map(jnp.asarray, synthetic_batch(config.model, batch=2, seq_len=32))
  scanned = build_model(config.model)
  params = jax.jit(scanned.init)(jax.random.key(0), batch)["params"]
  config.model.decoder.scan_layers = False
  unscanned = build_model(config.model)
  layers = params["decoder"].pop("layers")
  for g in range(1):
    for j in range(2):
      params["decoder"][f"layers_{2 * g + j}"] = jax.tree.map(lambda a, g=g: a[g],
                                                              layers[f"block_{j}"])
  apply = jax.jit(lambda model, p: model.apply({"params": p}, batch, mutable=["moe"]),
                  static_argnums=0)
  a, sa = apply(scanned, params | {"decoder": {**params["decoder"], "layers": layers}})
  b, sb = apply(unscanned, params)
  np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)
  assert moe_lib.aux_terms(sa["moe"], 0.01, 0.001)[0] == pytest.approx(
      float(moe_lib.aux_terms(sb["moe"], 0.01, 0.001)[0]), rel=1e-5)


def test_flops_and_param_counts_use_active_experts():
  config = _moe_config({})
  model = build_model(config.model)
  batch = jax.tree.map(jnp.asarray, synthetic_batch(config.model, batch=1, seq_len=32))
  total = flops_lib.param_count(jax.eval_shape(model.init, jax.random.key(0), batch)["params"])
  counts = flops_lib.param_counts(config.model, total)
  # 1 MoE layer x (4 - 2) idle experts x 3 kernels of 64 x 64
  assert counts["total"] - counts["active"] == 2 * 3 * 64 * 64
  dense = config.model.copy_and_resolve_references()
  dense.decoder.moe_every = 0
  d = flops_lib.decoder_macs_per_sequence(config.model, 32) - \
      flops_lib.decoder_macs_per_sequence(dense, 32)
  # per MoE layer: k experts of width 64 instead of one 128-wide MLP, plus the router
  assert d == 32 * 64 * (3 * 2 * 64 + 4) - 3 * 32 * 64 * 128


@pytest.mark.parametrize("field,value,message", [
    ("moe_every", 4, "not divisible by 4"),
    ("experts_per_token", 5, "more than"),
    ("moe_dispatch", "sparse", "unknown dispatch"),
])
def test_bad_moe_fields_fail_naming_the_field(field, value, message):
  config = _moe_config({})
  config.model.decoder[field] = value
  with pytest.raises(ConfigError, match=message) as err:
    validate_model_config(config.model)
  assert f"model.decoder.{field}" in str(err.value)


def test_experts_must_divide_the_expert_axis():
  with pytest.raises(ConfigError, match="num_experts"):
    validate(_moe_config({"data": 1, "expert": 8}), 8)


@pytest.mark.parametrize("size,devices", [("xs-moe", 8), ("s-moe", 8), ("3b-64e", 256)])
def test_moe_presets_validate(size, devices):
  config = config_lib.load_config(f"configs/scaling/point.py:size={size}")
  spec = validate(config, devices)
  d = config.model.decoder
  assert d.moe_every == 2 and d.experts_per_token == 2
  assert d.num_experts % spec.mesh_shape["expert"] == 0
