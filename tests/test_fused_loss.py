"""The train step's loss (projection + cross-entropy on loss positions only, gradient in the
forward pass) equals the full-logits loss: values and gradients, tied and untied, with packing."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmscale.models import build_model
from mmscale.models.fused_loss import _blocks, _capacities, fused_loss_sums, loss_block_rows
from mmscale.models.loss import loss_sums
from mmscale.testing import numpy_init, synthetic_batch, tiny_model_config

Z_LOSS = 1e-3


def _masked_batch(cfg):
  """Rows with different loss counts (so a middle capacity is chosen), a packed row, padding."""
  batch = synthetic_batch(cfg, batch=4, seq_len=32)
  batch["mask_loss"][0, :20] = 0   # 12 loss positions
  batch["mask_loss"][1, :] = 0     # none
  batch["mask_loss"][2, 5:9] = 0   # a gap
  batch["segment_ids"][3, 16:] = 2  # two packed examples, then padding
  batch["segment_ids"][3, 28:] = 0
  return batch


def test_capacities_cover_the_row():
  assert _capacities(32) == (8, 16, 24, 32)
  assert _capacities(5) == (5,) and _capacities(1) == (1,)
  # the benchmark's rows: 127 loss positions of 192 fit 128 (not the 144 of T / 8 steps)
  caps = _capacities(192)
  assert min(c for c in caps if c >= 127) == 128
  for length in (64, 192, 1000, 2048, 8192):  # at most 16 branches, the last one the whole row
    caps = _capacities(length)
    assert len(caps) <= 16 and caps[-1] == length and all(c % 8 == 0 for c in caps[:-1])


@pytest.mark.parametrize("tied", [True, False])
def test_fused_loss_equals_full_logits_loss(tied):
  cfg = tiny_model_config()
  cfg.decoder.tie_embeddings = tied
  model = build_model(cfg)
  batch = _masked_batch(cfg)
  params = nn.unbox(numpy_init(model, batch)["params"])

  def full(p):
    sums = loss_sums(model.apply({"params": p}, batch), batch, Z_LOSS)
    return sums["nll"] + sums["z"], sums

  def fused(p):
    hidden, matrix = model.apply({"params": p}, batch, features_only=True)
    sums = fused_loss_sums(hidden, matrix, batch, Z_LOSS)
    return sums.pop("objective"), sums

  (l0, s0), g0 = jax.jit(jax.value_and_grad(full, has_aux=True))(params)
  (l1, s1), g1 = jax.jit(jax.value_and_grad(fused, has_aux=True))(params)
  np.testing.assert_allclose(l1, l0, rtol=1e-6)
  for key in ("nll", "z", "weight", "correct"):
    np.testing.assert_allclose(s1[key], s0[key], rtol=1e-6, atol=1e-6, err_msg=key)
  assert 0 < float(s0["weight"]) < 3 * 31  # some positions carry no loss
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6), g1, g0)
  out = g1["decoder"]["embedding" if tied else "unembed"]
  assert float(jnp.abs(jax.tree.leaves(out)[0]).max()) > 0


def test_no_loss_positions_gives_zero_sums_and_gradient():
  rng = np.random.default_rng(0)
  hidden = jnp.asarray(rng.standard_normal((2, 8, 4)), jnp.float32)
  matrix = jnp.asarray(rng.standard_normal((16, 4)), jnp.float32)
  batch = {"tokens": jnp.ones((2, 8), jnp.int32), "mask_loss": jnp.zeros((2, 8), jnp.int32),
           "segment_ids": jnp.ones((2, 8), jnp.int32)}
  grads = jax.grad(lambda h, m: fused_loss_sums(h, m, batch)["objective"], argnums=(0, 1))(
      hidden, matrix)
  assert float(fused_loss_sums(hidden, matrix, batch)["weight"]) == 0
  assert all(float(jnp.abs(g).max()) == 0 for g in grads)


def test_soft_capped_fused_loss_equals_capped_logits_loss():
  """Gemma 2's final logit soft-capping: the fused loss with logit_softcap c equals the
  full-logits loss of c * tanh(logits / c), values and gradients (a small cap, so it bites)."""
  rng = np.random.default_rng(1)
  hidden = jnp.asarray(rng.standard_normal((2, 8, 4)), jnp.float32)
  matrix = jnp.asarray(rng.standard_normal((16, 4)), jnp.float32)
  batch = {"tokens": jnp.asarray(rng.integers(0, 16, (2, 8)), jnp.int32),
           "mask_loss": jnp.ones((2, 8), jnp.int32), "segment_ids": jnp.ones((2, 8), jnp.int32)}
  cap = 1.5

  def full(h, m):
    sums = loss_sums(cap * jnp.tanh(h @ m.T / cap), batch, Z_LOSS)
    return sums["nll"] + sums["z"]

  fused = lambda h, m: fused_loss_sums(h, m, batch, Z_LOSS, cap)["objective"]  # noqa: E731
  plain = lambda h, m: fused_loss_sums(h, m, batch, Z_LOSS)["objective"]  # noqa: E731
  (l0, g0), (l1, g1), plain = jax.jit(lambda h, m: (
      jax.value_and_grad(full, argnums=(0, 1))(h, m),
      jax.value_and_grad(fused, argnums=(0, 1))(h, m), plain(h, m)))(hidden, matrix)
  np.testing.assert_allclose(l1, l0, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), g1, g0)
  assert abs(float(plain) - float(l0)) > 0.01 * float(l0)  # the cap changed the loss


@pytest.mark.parametrize("block_rows,cap", [(8, 0.0), (12, 0.0), (5, 2.0)])
def test_blocked_loss_equals_one_block(block_rows, cap):
  """Blocks of positions (a scan, the last block padded when the capacity does not divide) give
  the sums and gradients of one block: 12 rows = 2 rows x 6 positions of a capacity of 16."""
  rng = np.random.default_rng(2)
  hidden = jnp.asarray(rng.standard_normal((2, 16, 4)), jnp.float32)
  matrix = jnp.asarray(rng.standard_normal((24, 4)), jnp.float32)
  batch = {"tokens": jnp.asarray(rng.integers(0, 24, (2, 16)), jnp.int32),
           "mask_loss": jnp.ones((2, 16), jnp.int32), "segment_ids": jnp.ones((2, 16), jnp.int32)}
  batch["mask_loss"] = batch["mask_loss"].at[0, :3].set(0)

  def run(rows):
    def objective(h, m):
      sums = fused_loss_sums(h, m, batch, Z_LOSS, cap, rows)
      return sums.pop("objective"), sums
    return jax.jit(jax.value_and_grad(objective, argnums=(0, 1), has_aux=True))(hidden, matrix)

  (l0, s0), g0 = run(0)
  (l1, s1), g1 = run(block_rows)
  np.testing.assert_allclose(l1, l0, rtol=1e-6)
  for key in ("nll", "z", "weight", "correct"):
    np.testing.assert_allclose(s1[key], s0[key], rtol=1e-6, err_msg=key)
  assert float(s1["weight"]) == 2 * 15 - 2  # targets 1..15 of each row, less row 0's 1, 2
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), g1, g0)


def test_blocks_cover_the_capacity():
  assert _blocks(16, 128, 0) == (1, 128)      # one block asked for
  assert _blocks(16, 128, 4096) == (1, 128)   # fits
  assert _blocks(16, 128, 256) == (8, 16)     # 8 MiB of a vocabulary of 8192 on one device
  assert _blocks(2, 16, 12) == (3, 6)         # 18 positions, the last two padding
  assert _blocks(32, 16, 8) == (16, 1)        # more rows than a block: one position per block


def test_loss_block_rows_per_device():
  assert loss_block_rows(0.0, 8192, 1) == 0        # one block
  assert loss_block_rows(8.0, 8192, 1) == 256      # 8 MiB / (4 B x 8192)
  assert loss_block_rows(8.0, 8192, 4) == 1024     # per device: 4 batch shards
  assert loss_block_rows(0.001, 256_000, 2) == 2   # at least one row per device
  with pytest.raises(ValueError, match="expected >= 0"):
    loss_block_rows(-1.0, 8192, 1)
