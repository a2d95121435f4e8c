"""Metric writing (TensorBoard + console: clu, or tensorboardX without TensorFlow), MFU, and the
one-step-behind step logger."""

from __future__ import annotations

import json
import math
import time

import jax
import numpy as np

from mmscale import extras
from mmscale.errors import TrainingDivergedError
from mmscale.train import tbx_writer


def create_writer(logdir: str):
  """The run's metric writer: TensorBoard event files + log lines; event files on process 0 only.

  With TensorFlow installed (`pip install 'mmscale[tf]'`), clu's default writer; without it,
  tensorboardX's (mmscale/train/tbx_writer.py): clu's writers import TensorFlow, which the base
  install leaves out so that it installs on every host. Both write the files TensorBoard reads.
  Imported lazily: TensorFlow takes seconds to import.
  """
  just_logging = jax.process_index() > 0
  if not extras.available("tensorflow"):
    return tbx_writer.TensorboardXWriter(logdir, just_logging=just_logging)
  from clu import metric_writers  # pylint: disable=import-outside-toplevel
  return metric_writers.create_default_writer(logdir, just_logging=just_logging,
                                              asynchronous=True)


def create_progress(total_steps: int, writer):
  """Logs steps/s and an ETA every 30 s: clu's periodic action, or its stand-in without TF."""
  if not extras.available("tensorflow"):
    return tbx_writer.ProgressLogger(total_steps, writer, every_secs=30)
  from clu import periodic_actions  # pylint: disable=import-outside-toplevel
  return periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer,
                                         every_secs=30, every_steps=None)


class StepLogger:
  """Logs step k's metrics while step k+1 runs, so fetching values never stalls the device.

  Also runs the divergence guard (mmscale/train/guard.py) on every step's metrics, in order: a
  failed check raises `TrainingDivergedError` whose `step` is the failing step (its metrics were
  computed on the parameters of step - 1). `checked_step` is the last step that passed and
  `params_finite` whether its own updated parameters are finite.
  """

  def __init__(self, writer, *, flops_per_step: float, tokens_per_step: int, peak_flops: float,
               log_every: int, history_path: str | None = None, guard=None):
    self.writer = writer
    self.flops_per_step = flops_per_step
    self.tokens_per_step = tokens_per_step
    self.peak_flops_total = peak_flops * jax.device_count()
    self.log_every = log_every
    self.pending = None
    self.last_push = None
    self.last_logged: dict[str, float] = {}
    self.history = _History(history_path) if history_path and jax.process_index() == 0 else None
    self.guard = guard
    self.checked_step = None
    self.params_finite = False

  def push(self, step: int, metrics) -> None:
    """Records step `step`'s (device) metrics and flushes the previous step's.

    The time between pushes is the step time in steady state: fetching step k-1's metrics waits
    for the device, so the host runs at most one step ahead.
    """
    now = time.perf_counter()
    step_time = None if self.last_push is None else now - self.last_push
    self.last_push = now
    previous, self.pending = self.pending, (step, metrics, step_time)
    if previous is not None:
      self._flush(previous)

  def finish(self) -> None:
    if self.pending is not None:
      self._flush(self.pending)
      self.pending = None

  def _flush(self, entry) -> None:
    step, metrics, step_time = entry
    values = {k: float(np.asarray(_local_value(v))) for k, v in metrics.items()}
    reason = self.guard.check(values) if self.guard is not None else None
    if reason is None and not (math.isfinite(values["loss"]) and math.isfinite(values["grad_norm"])):
      reason = f"loss is {values['loss']} (grad norm {values['grad_norm']})"
    if reason is not None:
      error = TrainingDivergedError(f"{reason} at step {step}")
      error.step = step
      raise error
    self.checked_step = step
    self.params_finite = math.isfinite(values.get("param_norm", 0.0))
    if step % self.log_every and step != 1:
      return
    values["flops_per_step"] = self.flops_per_step
    values["tokens_per_step"] = self.tokens_per_step
    if step_time:  # the first step includes compilation: no speed figures for it
      values["step_time_s"] = step_time
      values["tokens_per_s"] = self.tokens_per_step / step_time
      values["tokens_per_s_per_device"] = values["tokens_per_s"] / jax.device_count()
      values["tflops_per_device"] = self.flops_per_step / step_time / jax.device_count() / 1e12
      values["mfu"] = self.flops_per_step / step_time / self.peak_flops_total
    self.last_logged = values
    self.writer.write_scalars(step, values)
    if self.history:
      self.history.append(json.dumps({"step": step, **values}))

  def mark_time(self) -> None:
    """Restarts step timing (after checkpoints or evals, which are not train steps)."""
    self.last_push = None


def _local_value(x):
  """A replicated metric's value from this process's first shard.

  `jax.device_get` refuses arrays that span processes; metrics are replicated, so any local
  shard holds the whole value.
  """
  return x.addressable_data(0) if isinstance(x, jax.Array) else x


class _History:
  """metrics.jsonl: one JSON line per logged step, appended; on process 0 only.

  Object stores (`gs://`) cannot append, so there the whole file is rewritten from memory (it is
  small: one line per `log_every` steps), starting from what a previous run left.
  """

  def __init__(self, path: str):
    self.path = path
    self.remote = "://" in path
    self.lines = None
    if self.remote:
      from etils import epath  # pylint: disable=import-outside-toplevel
      self.path = epath.Path(path)
      self.lines = self.path.read_text().splitlines() if self.path.exists() else []

  def append(self, line: str) -> None:
    if not self.remote:
      with open(self.path, "a") as f:
        f.write(line + "\n")
      return
    self.lines.append(line)
    self.path.write_text("\n".join(self.lines) + "\n")
