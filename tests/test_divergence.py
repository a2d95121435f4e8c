"""The divergence guard: what it flags, and that a destroyed state is never the one kept."""

import os

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import tiny_train_config
from mmscale.errors import TrainingDivergedError
from mmscale.train.guard import DivergenceGuard
from mmscale.train.trainer import train


def _guard(factor=10.0, window=20, zero_grad_steps=5, floor=0.1):
  return DivergenceGuard(ml_collections.ConfigDict(dict(
      divergence_loss_factor=factor, divergence_window=window, divergence_loss_floor=floor,
      divergence_zero_grad_steps=zero_grad_steps)))


def _feed(guard, losses, grad_norms=None):
  """Index of the first step the guard fails and its reason, else (None, None)."""
  grad_norms = grad_norms or [1.0] * len(losses)
  for i, (loss, grad_norm) in enumerate(zip(losses, grad_norms)):
    reason = guard.check({"loss": loss, "grad_norm": grad_norm, "param_norm": 1.0})
    if reason:
      return i, reason
  return None, None


def test_guard_flags_non_finite_values():
  assert "nan" in _feed(_guard(), [5.0, float("nan")])[1]
  assert "grad norm inf" in _feed(_guard(), [5.0, 4.0], [1.0, float("inf")])[1]


def test_guard_flags_a_finite_loss_explosion_against_the_running_median():
  # the losses of `--config.optim.lr=30` on configs/world/tiny.py: 6.7, 6.7, 7.3, then 139
  index, reason = _feed(_guard(), [6.71, 6.73, 7.25, 139.0, 252.0])
  assert index == 3 and "median 6.73" in reason
  # a noisy but sound curve passes, and the factor is the knob
  noisy = [6.0, 5.0, 9.0, 4.0, 3.5, 6.0, 3.0, 2.8, 5.5, 2.5]
  assert _feed(_guard(), noisy) == (None, None)
  assert _feed(_guard(factor=1.1), noisy)[0] == 5  # 6.0 > 1.1 x median 5.0
  assert _feed(_guard(factor=0), [6.7, 6.7, 7.2, 1e9]) == (None, None)  # 0 = off


def test_a_converged_loss_moves_by_its_noise_below_the_floor():
  # a VQA run whose loss converged near 0: median 0.0046, then a step at 0.048 (seen at step
  # 1,823 of a 3,000-step run that went on learning) is noise, not a divergence
  converged = [0.004, 0.005, 0.0046, 0.0043, 0.0047, 0.048, 0.005]
  assert _feed(_guard(), converged) == (None, None)
  index, reason = _feed(_guard(floor=0.0), converged)  # without the floor it fires
  assert index == 5 and "median 0.0046" in reason
  # a real blow-up from a converged loss still fails, and the message names the floor
  index, reason = _feed(_guard(), converged[:5] + [3.2])
  assert index == 5 and "divergence_loss_floor=0.1" in reason


def test_guard_flags_a_gradient_norm_stuck_at_zero():
  index, reason = _feed(_guard(zero_grad_steps=3), [1.0] * 6, [1.0, 0.0, 0.0, 1e-3, 0.0, 0.0])
  assert index is None  # never three zeros in a row
  index, reason = _feed(_guard(zero_grad_steps=3), [1.0] * 6, [1.0, 0.0, 0.0, 0.0, 1.0, 1.0])
  assert index == 3 and "gradient norm has been 0 for 3 steps" in reason


class DestroyAt:
  """Scales the params by 1e8 after `step` (finite, but destroyed), as a huge learning rate does:
  the state saved after that step must not be the one kept."""

  def __init__(self, step):
    self.step = step

  def __call__(self, ctx, step):
    if step == self.step:
      ctx.state = ctx.state.replace(params=jax.tree.map(lambda p: p * 1e8, ctx.state.params))


@pytest.mark.slow
def test_a_destroyed_state_is_not_kept_and_the_kept_one_resumes(tiny_world, tmp_path):
  workdir = str(tmp_path / "run")
  config = tiny_train_config(tiny_world, steps=8, checkpoint_every=2, keep_checkpoints=1)
  with pytest.raises(TrainingDivergedError) as raised:
    train(config, workdir, hooks=(DestroyAt(4),))
  message = str(raised.value)
  assert "at step 5" in message and "parameters after step 4" in message, message
  assert "Checkpoint step 2 is kept" in message, message
  directory = os.path.join(workdir, "checkpoints")
  assert ocp.CheckpointManager(directory).all_steps() == [2]  # step 4 saved, then deleted
  ctx = train(config, workdir)  # resumes from step 2, without the fault
  assert int(ctx.state.step) == 8
  assert np.isfinite(ctx.last_metrics["loss"]) and ctx.last_metrics["loss"] < 20
  assert ocp.CheckpointManager(directory).all_steps() == [6, 8]  # keep=1 checked + the newest
