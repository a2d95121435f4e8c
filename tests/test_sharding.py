"""Every sharding strategy computes the same step as one device: loss, gradients, new params."""

import jax
import numpy as np
import pytest

from mmscale.config import base_config
from mmscale.testing import synthetic_batch, tiny_model_config, train_step_for
from mmscale.parallel import rules as sharding_rules

MESHES = {
    "single": {"data": 1, "fsdp": 1, "tensor": 1, "expert": 1},
    "data8": {"data": 8, "fsdp": 1, "tensor": 1, "expert": 1},
    "fsdp8": {"data": 1, "fsdp": 8, "tensor": 1, "expert": 1},
    "d2f2t2": {"data": 2, "fsdp": 2, "tensor": 2, "expert": 1},
}


def make_config(mesh_shape, grad_accum=1, loss_block_mib=0.0):
  c = base_config()
  tiny = tiny_model_config()
  for part in ("vit", "connector", "decoder"):
    c.model[part].update(tiny[part])
  c.data.seq_len, c.data.max_images_per_seq, c.data.batch_size = 32, 1, 8
  c.mesh.shape = mesh_shape
  c.optim.grad_accum_steps = grad_accum
  c.train.loss_block_mib = loss_block_mib
  return c


def one_step(name, grad_accum=1, loss_block_mib=0.0):
  config = make_config(MESHES[name], grad_accum, loss_block_mib)
  devices = jax.devices()[:1] if name == "single" else jax.devices()
  step, state, mesh, rules = train_step_for(config, devices)
  batch = synthetic_batch(config.model, batch=8, seq_len=32)
  batch["mask_loss"][:, :11] = 0
  with jax.set_mesh(mesh):
    state, metrics = step(state, sharding_rules.global_batch(batch, mesh, rules))
  return jax.device_get(metrics), jax.device_get(state.params), state


@pytest.fixture(scope="module")
def reference():
  return one_step("single")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["data8", "fsdp8", "d2f2t2"])
def test_sharded_step_equals_single_device(reference, name):
  ref_metrics, ref_params, _ = reference
  metrics, params, state = one_step(name)
  assert metrics["loss"] == pytest.approx(ref_metrics["loss"], rel=1e-5)
  assert metrics["grad_norm"] == pytest.approx(ref_metrics["grad_norm"], rel=1e-4)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4),
               params, ref_params)
  if name != "data8":  # weights really are split across devices
    leaves = jax.tree.leaves(state.params)
    assert any(x.sharding.shard_shape(x.shape) != x.shape for x in leaves)


def test_grad_accumulation_equals_one_big_batch(reference):
  ref_metrics, ref_params, _ = reference
  metrics, params, _ = one_step("d2f2t2", grad_accum=2)  # 2 microbatches of 4 rows
  assert metrics["loss"] == pytest.approx(ref_metrics["loss"], rel=1e-5)
  assert metrics["grad_norm"] == pytest.approx(ref_metrics["grad_norm"], rel=1e-4)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4),
               params, ref_params)


def test_loss_in_blocks_on_a_sharded_batch_equals_one_block(reference):
  """`train.loss_block_mib` small enough for 2 positions of each device's 2 rows per block: the
  loss is taken over many blocks (a scan) on a batch split over 4 devices, with the same step."""
  ref_metrics, ref_params, _ = reference
  config = make_config(MESHES["d2f2t2"])
  two_rows = 2 * 4 * config.model.decoder.vocab_size / 2 ** 20  # MiB of 2 float32 logit rows
  metrics, params, _ = one_step("d2f2t2", loss_block_mib=2 * two_rows)
  assert metrics["loss"] == pytest.approx(ref_metrics["loss"], rel=1e-5)
  assert metrics["grad_norm"] == pytest.approx(ref_metrics["grad_norm"], rel=1e-4)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4),
               params, ref_params)
