"""End to end on the knowledge world: train, SIGTERM + resume, export, divergence, evaluation."""

import glob
import gzip
import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import tiny_train_config
from mmscale.errors import TrainingDivergedError
from mmscale.eval import generate
from mmscale.train.trainer import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return {row["step"]: row["loss"] for row in rows}


@pytest.fixture(scope="module")
def uninterrupted(tiny_world, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("run_a"))
  ctx = train(tiny_train_config(tiny_world), workdir)
  return workdir, ctx


@pytest.mark.slow
def test_loss_falls(uninterrupted):
  workdir, ctx = uninterrupted
  by_step = losses(workdir)
  assert sorted(by_step) == list(range(1, 41))
  first, last = np.mean([by_step[s] for s in (1, 2, 3)]), np.mean([by_step[s] for s in (38, 39, 40)])
  assert last < 0.7 * first, (first, last)
  assert {"mfu", "tokens_per_s", "grad_norm", "lr", "step_time_s"} <= set(ctx.last_metrics)
  assert os.listdir(os.path.join(workdir, "tensorboard"))


PROFILED_RUN = """
import sys
sys.path.insert(0, {tests!r})
from conftest import tiny_train_config  # 8 simulated devices, set before jax is imported
from mmscale.train.trainer import train
train(tiny_train_config({world!r}, steps=6, profile_start=3, profile_steps=2), {workdir!r})
"""


@pytest.mark.slow
def test_profile_window_writes_a_trace(tiny_world, tmp_path):
  """Steps 4 and 5 traced by jax.profiler, in a training process of its own as a user runs it:
  inside a test worker that had run other tests first (torch, TensorFlow, Beam loaded),
  jax.profiler.start_trace died of a segmentation fault."""
  workdir = str(tmp_path / "profiled")
  code = PROFILED_RUN.format(tests=os.path.dirname(os.path.abspath(__file__)), world=tiny_world,
                             workdir=workdir)
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=600, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  xplanes = glob.glob(os.path.join(workdir, "profile", "plugins", "profile", "*", "*.xplane.pb"))
  perfetto = glob.glob(os.path.join(workdir, "profile", "plugins", "profile", "*", "*.trace.json.gz"))
  assert len(xplanes) == 1 and len(perfetto) == 1, os.listdir(workdir)
  with gzip.open(perfetto[0], "rt") as f:
    events = json.load(f)["traceEvents"]
  names = {e.get("name", "") for e in events}
  assert "PjitFunction(step)" in names, sorted(names)  # the jitted train step ran in the window


class SigtermAt:
  """Sends this process a real SIGTERM after `step`, as a preemption would."""

  def __init__(self, step):
    self.step = step

  def __call__(self, ctx, step):
    if step == self.step:
      os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_then_resume_equals_uninterrupted(uninterrupted, tiny_world, tmp_path):
  workdir_a, _ = uninterrupted
  workdir = str(tmp_path / "run_b")
  config = tiny_train_config(tiny_world)
  ctx = train(config, workdir, hooks=(SigtermAt(17),))
  assert ctx.stopped_by_signal and int(ctx.state.step) == 17
  assert 17 in ocp.CheckpointManager(os.path.join(workdir, "checkpoints")).all_steps()
  ctx = train(config, workdir)
  assert int(ctx.state.step) == 40
  a, b = losses(workdir_a), losses(workdir)
  assert sorted(b) == list(range(1, 41))
  assert [a[s] for s in range(1, 41)] == [b[s] for s in range(1, 41)]  # bit-for-bit


def test_export_reproduces_logits(uninterrupted, tmp_path):
  workdir, ctx = uninterrupted
  from tools.export import export  # pylint: disable=import-outside-toplevel
  path = export(workdir, str(tmp_path / "export"))
  with ocp.StandardCheckpointer() as ckptr:  # plain Orbax, no target, no mmscale types
    exported = ckptr.restore(path)
  trained = jax.device_get(ctx.state.params)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(exported), trained)
  batch = _eval_prompt_batch(ctx)
  logits = lambda p: np.asarray(ctx.model.apply({"params": p}, batch))
  np.testing.assert_allclose(logits(jax.device_get(exported)), logits(trained), rtol=1e-6, atol=1e-6)
  path16 = export(workdir, str(tmp_path / "export16"), dtype="bfloat16")
  with ocp.StandardCheckpointer() as ckptr:
    assert {x.dtype.name for x in jax.tree.leaves(ckptr.restore(path16))} == {"bfloat16"}


def _eval_prompt_batch(ctx):
  from mmscale.data.batch import one_per_row  # pylint: disable=import-outside-toplevel
  from mmscale.data.transforms import builder_for  # pylint: disable=import-outside-toplevel
  from mmscale.eval.records import load_eval_records  # pylint: disable=import-outside-toplevel
  builder = builder_for(ctx.config.data, ctx.layout, ctx.tokenizer)
  prompts = [builder(r, prompt_only=True) for r in load_eval_records(ctx.config)[:8]]
  return one_per_row(prompts, ctx.layout, length=max(len(p["tokens"]) for p in prompts),
                     pad="left")


def test_kv_cache_decoding_equals_recompute(uninterrupted):
  _, ctx = uninterrupted
  batch = _eval_prompt_batch(ctx)
  params = jax.device_get(ctx.state.params)
  cached = generate.greedy_generate(ctx.model, params, batch, max_new_tokens=5)
  recomputed = generate.greedy_generate_recompute(ctx.model, params, batch, max_new_tokens=5)
  np.testing.assert_array_equal(np.asarray(cached), np.asarray(recomputed))


class PoisonAt:
  """Makes the params NaN after `step`, so the next step's loss is NaN."""

  def __init__(self, step):
    self.step = step

  def __call__(self, ctx, step):
    if step == self.step:
      ctx.state = ctx.state.replace(params=jax.tree.map(lambda p: p * np.nan, ctx.state.params))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_world, tmp_path):
  workdir = str(tmp_path / "run_nan")
  config = tiny_train_config(tiny_world, steps=12, checkpoint_every=5)
  with pytest.raises(TrainingDivergedError, match="step 9"):
    train(config, workdir, hooks=(PoisonAt(8),))
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  assert manager.all_steps() == [5]


def test_eval_loads_params_from_a_relative_workdir(uninterrupted, monkeypatch):
  """`python -m mmscale.eval --workdir=runs/x` (relative, as the README runs it) finds the params."""
  from mmscale.eval.loading import load_run  # pylint: disable=import-outside-toplevel
  workdir, ctx = uninterrupted
  monkeypatch.chdir(os.path.dirname(workdir))
  run, step = load_run(os.path.basename(workdir))
  assert step == 40
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(run.params),
               jax.device_get(ctx.state.params))
