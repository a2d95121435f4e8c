"""The metric writer of an install without TensorFlow: TensorBoard event files via tensorboardX.

clu's writers (`clu.metric_writers`) import TensorFlow at package import, and TensorFlow has no
wheel for some hosts (and costs ~1.5 GB); `mmscale.train.metrics.create_writer` uses clu's default
writer when TensorFlow is installed (`pip install 'mmscale[tf]'`) and this one otherwise. It keeps
clu's `MetricWriter` calls the trainer makes (`write_scalars`, `write_hparams`, `flush`, `close`)
and, like clu's default writer, also logs every scalar line through absl logging. tensorboardX
writes the same event-file format TensorBoard reads (`tensorboard --logdir WORKDIR/tensorboard`).
"""

from __future__ import annotations

import time
from typing import Any, Mapping

from absl import logging


class TensorboardXWriter:
  """TensorBoard scalars and hparams through tensorboardX, plus clu-style log lines.

  just_logging: only the log lines (processes other than 0 write no event files).
  """

  def __init__(self, logdir: str | None, *, just_logging: bool = False):
    self._writer = None
    if logdir and not just_logging:
      import tensorboardX  # pylint: disable=import-outside-toplevel
      self._writer = tensorboardX.SummaryWriter(logdir=logdir, flush_secs=30)

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    logging.info("[%d] %s", step, ", ".join(f"{k}={v:.6g}" for k, v in sorted(scalars.items())))
    if self._writer is not None:
      for key, value in scalars.items():
        self._writer.add_scalar(key, float(value), global_step=step)

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    logging.info("hparams: %s", ", ".join(f"{k}={v}" for k, v in sorted(hparams.items())))
    if self._writer is not None:
      from tensorboardX import summary  # pylint: disable=import-outside-toplevel
      values = {k: v if isinstance(v, (bool, int, float, str)) else str(v)
                for k, v in hparams.items()}
      for proto in summary.hparams(values, {}):  # experiment, session start, session end
        self._writer.file_writer.add_summary(proto)

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None


class ProgressLogger:
  """clu's `ReportProgress` without clu: steps/s and an ETA as a log line and a scalar.

  Called after every step; reports at most every `every_secs` seconds.
  """

  def __init__(self, total_steps: int, writer, every_secs: float = 30.0):
    self.total_steps = total_steps
    self.writer = writer
    self.every_secs = every_secs
    self.last = None  # (time, step) of the previous report

  def __call__(self, step: int) -> None:
    now = time.monotonic()
    if self.last is None:
      self.last = (now, step)
      return
    elapsed = now - self.last[0]
    if elapsed < self.every_secs or step == self.last[1]:
      return
    steps_per_sec = (step - self.last[1]) / elapsed
    self.last = (now, step)
    eta_min = (self.total_steps - step) / steps_per_sec / 60
    logging.info("step %d/%d: %.3g steps/s, ETA %.1f min", step, self.total_steps,
                 steps_per_sec, eta_min)
    self.writer.write_scalars(step, {"steps_per_sec": steps_per_sec})
