"""A jax.profiler trace of a window of train steps into `W/profile` (any backend).

`train.profile_steps` = N > 0 traces the steps `train.profile_start + 1` ..
`train.profile_start + N` (1-based, as numbered in `W/metrics.jsonl`); the default start skips
the compiling first steps. The trace is TensorBoard's profile format
(`W/profile/plugins/profile/<time>/<host>.xplane.pb`, opened by `tensorboard --logdir W/profile`
with the `tensorboard-plugin-profile` package) plus a Perfetto trace
(`<host>.trace.json.gz`, opened at ui.perfetto.dev). docs/performance.md says how to read it.
"""

from __future__ import annotations

import logging
import os

import jax


class StepProfiler:
  """Starts the trace before the first step of the window and stops it after the last one.

  Stopping waits for the window's last state (`jax.block_until_ready`), so the trace holds the
  whole computation of the traced steps, not only their asynchronous dispatch.
  """

  def __init__(self, workdir: str, start: int, count: int):
    self.log_dir = os.path.join(workdir, "profile")
    self.first, self.last = start + 1, start + count  # 1-based step numbers
    self.active = False

  def before_step(self, step: int) -> None:
    """`step` (1-based) is about to run; a resumed run past the window's start begins at once."""
    if self.first <= step <= self.last and not self.active:
      jax.profiler.start_trace(self.log_dir, create_perfetto_trace=True)
      self.active = True
      logging.info("profiling steps %d..%d into %s", step, self.last, self.log_dir)

  def after_step(self, step: int, state) -> None:
    if self.active and step >= self.last:
      self.stop(state)

  def stop(self, state) -> None:
    if self.active:
      jax.block_until_ready(state)
      jax.profiler.stop_trace()
      self.active = False
      logging.info("profile written to %s", self.log_dir)
