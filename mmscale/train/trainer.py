"""The one training loop. Everything optional (evaluation, profiling, ...) plugs in as a hook.

Order of a run: validate the config (before anything compiles) -> mesh -> sharded state ->
restore the latest checkpoint (state + data iterator) if the workdir has one -> loop. SIGTERM
(preemption) finishes the current step, saves, and returns cleanly. The divergence guard
(mmscale/train/guard.py) checks every step; a failed check deletes the checkpoints whose state
it condemns (a step's metrics are computed on the previous step's parameters) and raises
`TrainingDivergedError` naming the checkpoint kept, or saying that none is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from typing import Protocol

import jax
import numpy as np
from etils import epath
from jax.sharding import NamedSharding, PartitionSpec

from mmscale.data import pipeline
from mmscale.data.batch import empty_rows
from mmscale.hf.init_from import apply_init_from, starts_from_checkpoints
from mmscale.errors import TrainingDivergedError
from mmscale.models import flops as flops_lib
from mmscale.parallel import mesh as mesh_lib
from mmscale.parallel import rules as sharding_rules
from mmscale.runtime import Run, build_run
from mmscale.train import metrics as metrics_lib
from mmscale.train import optim, peak, resume
from mmscale.train.checkpoint import Checkpointer
from mmscale.train.profiler import StepProfiler
from mmscale.train.guard import DivergenceGuard
from mmscale.train.state import abstract_state, create_sharded_state
from mmscale.train.step import make_train_step


class Hook(Protocol):
  """Called after every train step with the live run (`run.params` are the current ones)."""

  def __call__(self, run: Run, step: int) -> None: ...


class _SignalFlag:
  """Turns SIGTERM (preemption) into a flag the loop polls, so a save never races a running step."""

  def __init__(self):
    self.raised = False
    self._previous = {}

  def __enter__(self):
    try:
      self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread: leave signals alone
      pass
    return self

  def _handle(self, signum, frame):
    del frame
    logging.warning("signal %d: saving a checkpoint and stopping after this step", signum)
    self.raised = True

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


class _StopVote:
  """Makes every process stop after the same step when any of them is signalled.

  A preemption's SIGTERM reaches the hosts of a slice at slightly different steps; a host that
  stopped alone would leave the others waiting in a collective forever. Each step, the local
  flags are max-reduced on the devices (a one-element collective dispatched behind the step) and
  read one step later, when the host waits for that step's metrics anyway: all processes see
  the same vote at the same step. One process: the flag itself, at once.
  """

  def __init__(self, mesh):
    self.multi = jax.process_count() > 1
    self.pending = None
    if self.multi:
      self.sharding = NamedSharding(mesh, PartitionSpec(mesh.axis_names))
      self.reduce = jax.jit(lambda x: x.max(), out_shardings=NamedSharding(mesh, PartitionSpec()))

  def __call__(self, raised: bool) -> bool:
    if not self.multi:
      return raised
    local = [jax.device_put(np.full((1,), raised, np.int32), d)
             for d in self.sharding.addressable_devices]
    vote = self.reduce(jax.make_array_from_single_device_arrays(
        (jax.device_count(),), self.sharding, local))
    previous, self.pending = self.pending, vote
    return previous is not None and bool(np.asarray(previous.addressable_data(0)))


def train(config, workdir: str, hooks: tuple[Hook, ...] = (),
          stop_at_step: int | None = None) -> Run:
  """Trains `config` in `workdir`, resuming from its latest checkpoint. Returns the run.

  `stop_at_step` ends the loop early (as a preemption would), for tests and sweeps.
  `workdir` may be a local or shared path or a `gs://` URL (every process passes the same one).
  """
  ctx = build_run(config, workdir)  # validates once: a wrong config fails in seconds
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  cfg, mesh, rules = ctx.config, ctx.mesh, ctx.rules
  total_steps = cfg.train.steps
  restart_data = resume.check_resume(workdir, cfg)  # refuses a changed model or data, at once

  boxed_params = ctx.abstract_params()  # the one trace of model.init before compiling
  num_params = flops_lib.param_count(boxed_params)
  tx, schedule = optim.make_optimizer(cfg.optim, total_steps, num_params)
  state, state_shardings = create_sharded_state(ctx.model, tx, boxed_params,
                                                empty_rows(ctx.layout, 1), mesh, rules,
                                                jax.random.key(cfg.seed))
  num_shards, local_shards = mesh_lib.process_batch_shards(mesh, rules)
  data_iter = pipeline.make_train_iterator(
      cfg.data, ctx.layout, ctx.tokenizer, process_index=jax.process_index(),
      process_count=jax.process_count(), seed=cfg.data.shuffle_seed, num_shards=num_shards,
      shards=local_shards)

  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"),
                              save_every=cfg.train.checkpoint_every,
                              keep=cfg.train.keep_checkpoints,
                              async_save=cfg.train.async_checkpoint)
  if checkpointer.latest_step() is not None:
    try:
      state, restored_iter = checkpointer.restore(abstract_state(state),
                                                  None if restart_data else data_iter)
    except (ValueError, TypeError, KeyError) as e:  # Orbax: a tree or shape that differs
      raise resume.restore_error(workdir, cfg, e) from e
    data_iter = data_iter if restart_data else restored_iter
  elif starts_from_checkpoints(cfg.model):  # a fresh start from pretrained checkpoints
    with jax.set_mesh(mesh):
      state = state.replace(params=apply_init_from(cfg.model, state.params))
  start_step = int(np.asarray(state.step.addressable_data(0)))
  if jax.process_index() == 0:
    resume.write_config(workdir, cfg, start_step)  # a different previous one goes to history
  active_params = flops_lib.param_counts(cfg.model, num_params)["active"]
  logging.info("model: %s parameters (%.2fM), %s active per token; lr peak %.3g; mesh %s; "
               "start step %d", num_params, num_params / 1e6, active_params,
               optim.peak_learning_rate(cfg.optim, num_params), dict(mesh.shape), start_step)

  writer = metrics_lib.create_writer(os.path.join(workdir, "tensorboard"))
  writer.write_hparams({"num_params": num_params, "num_active_params": active_params,
                        **_flat_hparams(cfg)})
  rows, seq_len = cfg.data.batch_size, ctx.layout.seq_len
  flops_per_step = rows * flops_lib.train_flops_per_sequence(
      cfg.model, seq_len, ctx.layout.max_images)
  peak_flops = cfg.train.peak_flops_per_device or peak.device_peak_flops(cfg.model.dtype)
  logger = metrics_lib.StepLogger(writer, flops_per_step=flops_per_step,
                                  tokens_per_step=rows * seq_len, peak_flops=peak_flops,
                                  log_every=cfg.train.log_every,
                                  history_path=os.path.join(workdir, "metrics.jsonl"),
                                  guard=DivergenceGuard(cfg.train))
  progress = metrics_lib.create_progress(total_steps, writer)
  step_fn = make_train_step(ctx.model, tx, schedule, cfg, mesh, rules, state_shardings)
  ctx.state, ctx.state_shardings, ctx.writer = state, state_shardings, writer
  ctx.params = state.params

  end_step = min(total_steps, stop_at_step or total_steps)
  step = start_step
  vote = _StopVote(mesh)
  profiler = StepProfiler(workdir, cfg.train.profile_start, cfg.train.profile_steps)
  # the writer is closed here, not left to garbage collection: clu's asynchronous writer holds
  # threads and TensorFlow summary resources that must not outlive the run in this process
  with (jax.set_mesh(mesh), _SignalFlag() as flag, contextlib.closing(writer),
        _on_divergence(checkpointer, writer)):
    while step < end_step:
      batch = sharding_rules.global_batch(next(data_iter), mesh, rules, global_rows=rows)
      profiler.before_step(step + 1)
      ctx.state, metrics = step_fn(ctx.state, batch)
      ctx.params = ctx.state.params
      step += 1
      profiler.after_step(step, ctx.state)
      logger.push(step, metrics)  # checks the previous step (the guard raises on a failure)
      _mark_checked(checkpointer, logger)
      progress(step)
      for hook in hooks:
        hook(ctx, step)
      signalled = vote(flag.raised)
      stop = signalled or step == end_step
      if step % cfg.train.checkpoint_every == 0 or stop:
        logger.finish()  # checks this step before its state is saved
        _mark_checked(checkpointer, logger)
        if stop and not logger.params_finite:  # the last state has no next step to check it
          error = TrainingDivergedError(f"the parameters after step {step} are not finite")
          error.step = step + 1
          raise error
        checkpointer.save(step, ctx.state, data_iter, force=stop)
        logger.mark_time()
      if signalled:
        ctx.stopped_by_signal = True
        break
    profiler.stop(ctx.state)  # a window cut short by the end of the run
    logger.finish()
  checkpointer.close()
  ctx.last_metrics = logger.last_logged
  return ctx


def _mark_checked(checkpointer: Checkpointer, logger: metrics_lib.StepLogger) -> None:
  """Step k passing the guard vouches for the state saved after step k - 1."""
  if logger.checked_step is not None:
    checkpointer.mark_checked(logger.checked_step - 1)


@contextlib.contextmanager
def _on_divergence(checkpointer: Checkpointer, writer):
  """A `TrainingDivergedError` of the loop deletes the checkpoints that the failed step condemns
  (the state it ran on and later) and is raised again saying honestly which checkpoint is kept."""
  try:
    yield
  except TrainingDivergedError as e:
    raise _diverged(checkpointer, writer, e) from None


def _diverged(checkpointer: Checkpointer, writer, error: TrainingDivergedError):
  bad = error.step - 1
  kept = checkpointer.discard_from(bad)
  checkpointer.close()
  writer.flush()
  if kept is None:
    outcome = "No checkpoint is kept: the run diverged before its first checked save"
  else:
    outcome = (f"Checkpoint step {kept} is kept (its state passed the check); rerunning "
               "resumes from it")
  return TrainingDivergedError(
      f"training diverged: {error} (computed on the parameters after step {bad}). {outcome}. "
      "Lower optim.lr or check the data (docs/failures.md).")


def _flat_hparams(cfg) -> dict:
  out = {}
  def visit(prefix, node):
    for key, value in node.items():
      name = f"{prefix}{key}"
      if hasattr(value, "items"):
        visit(name + ".", value)
      elif isinstance(value, (int, float, str, bool)):
        out[name] = value
  visit("", cfg)
  return out
