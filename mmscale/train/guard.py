"""The divergence guard: decides, from a step's metrics, whether the parameters it ran on are sound.

Step k's loss and gradient norm are computed on the parameters that step k-1 produced, so they
are the check of the state saved after step k-1: a checkpoint is only kept once the next step's
metrics pass (mmscale/train/trainer.py). A state is unsound when, on its parameters,

  * the loss or the gradient norm is NaN or Inf;
  * the loss exceeds `train.divergence_loss_factor` x the median loss of the previous
    `train.divergence_window` steps (checked from the 4th step on; a finite blow-up, e.g. a loss
    of 1e5 after 7: the median ignores the odd noisy step that a mean would follow), a median
    below `train.divergence_loss_floor` counting as the floor: a run whose loss has converged
    near 0 (a memorised task, median 0.005) moves by more than 10x on ordinary noise (0.05),
    which is no divergence;
  * the gradient norm is exactly 0 for `train.divergence_zero_grad_steps` steps in a row (a
    saturated model that no longer learns, e.g. after such a blow-up).

Also, the step's own updated parameters must be finite (`param_norm`): the only check possible for
the last state of a run, which has no next step yet.
"""

from __future__ import annotations

import collections
import math

import numpy as np

MIN_HISTORY = 3  # losses needed before the spike check applies


class DivergenceGuard:
  """Feeds on each step's metrics in order; `check` returns why the step failed, or None."""

  def __init__(self, train_config):
    self.factor = float(train_config.divergence_loss_factor)
    self.floor = float(train_config.divergence_loss_floor)
    self.losses = collections.deque(maxlen=max(MIN_HISTORY, int(train_config.divergence_window)))
    self.zero_grad_steps = int(train_config.divergence_zero_grad_steps)
    self.zero_run = 0

  def check(self, values: dict) -> str | None:
    """`values`: a step's host metrics (loss, grad_norm, param_norm). None when sound."""
    loss, grad_norm = values["loss"], values["grad_norm"]
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
      return f"loss is {loss} (grad norm {grad_norm})"
    if self.factor > 0 and len(self.losses) >= MIN_HISTORY:
      median = float(np.median(self.losses))
      if loss > self.factor * max(median, self.floor):
        floor = (f" (train.divergence_loss_floor={self.floor:g})" if median < self.floor
                 else "")
        return (f"loss is {loss:.4g}, more than train.divergence_loss_factor={self.factor:g} x "
                f"the median {median:.4g} of the previous {len(self.losses)} steps{floor}")
    self.losses.append(loss)
    self.zero_run = self.zero_run + 1 if grad_norm == 0 else 0
    if self.zero_grad_steps and self.zero_run >= self.zero_grad_steps:
      return (f"the gradient norm has been 0 for {self.zero_run} steps "
              f"(train.divergence_zero_grad_steps={self.zero_grad_steps})")
    return None
