"""A real 2-process training run on localhost equals a 1-process run of the same mesh.

Two JAX processes (4 simulated CPU devices each, gloo collectives, a free port) train the tiny
config on a data=4 x fsdp=2 mesh that spans both. Process 1 alone receives SIGTERM after step 3;
the stop vote makes both stop after step 4 and checkpoint (state + each process's data iterator).
`python -m mmscale.train` then resumes to step 6. The per-step losses must equal an in-process
8-device run of the same config: the data shards make the global batch independent of how many
processes load it.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import tiny_train_config
from mmscale.launch.local_multiprocess import free_port, process_env
from mmscale.train.trainer import train

STEPS, SIGTERM_AT = 6, 3
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG_PY = '''
import json
import ml_collections
def get_config(arg=None):
  with open(%r) as f:
    return ml_collections.ConfigDict(json.load(f))
'''

WORKER = '''
import os, signal, sys
from mmscale.parallel.mesh import maybe_initialize_distributed
maybe_initialize_distributed()
import jax
from mmscale import config as config_lib
from mmscale.train.trainer import train
config = config_lib.load_config(sys.argv[1])
def sigterm_on_process_1(ctx, step):
  if step == %d and jax.process_index() == 1:
    os.kill(os.getpid(), signal.SIGTERM)
ctx = train(config, sys.argv[2], hooks=(sigterm_on_process_1,))
print("STOPPED", jax.process_index(), int(ctx.state.step.addressable_data(0)), ctx.stopped_by_signal)
''' % SIGTERM_AT


def _config(world):
  c = tiny_train_config(world, steps=STEPS, checkpoint_every=2)
  c.mesh.shape.update(data=4, fsdp=2)
  c.train.async_checkpoint = True
  return c


def _losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return [(row["step"], row["loss"]) for row in rows]


def _run_two(args, tmp_path, tag):
  """Starts 2 processes of `args`, waits, returns their outputs (asserting success)."""
  port = free_port()
  procs = []
  for pid in range(2):
    log = open(tmp_path / f"{tag}_{pid}.log", "w")
    # the resume run reuses the first run's compiled programs through the suite's persistent
    # compilation cache (tests/conftest.py; inherited): most of a tiny run is compiling
    env = process_env(port, 2, pid, devices_per_process=4)
    procs.append((subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                   env=env), log))
  outs = []
  for proc, log in procs:
    rc = proc.wait(timeout=240)
    log.close()
    text = open(log.name).read()
    assert rc == 0, text[-4000:]
    outs.append(text)
  return outs


@pytest.mark.slow
def test_two_processes_stop_resume_equal_one_process(tiny_world, tmp_path):
  config = _config(tiny_world)
  (tmp_path / "config.json").write_text(config.to_json())
  config_py = tmp_path / "multihost_config.py"
  config_py.write_text(CONFIG_PY % str(tmp_path / "config.json"))
  worker = tmp_path / "worker.py"
  worker.write_text(WORKER)
  workdir = str(tmp_path / "two")

  outs = _run_two([sys.executable, str(worker), str(config_py), workdir], tmp_path, "first")
  for pid, out in enumerate(outs):  # both stop after the same step, one after the signal
    assert f"STOPPED {pid} {SIGTERM_AT + 1} True" in out, out[-3000:]
  step_dir = os.path.join(workdir, "checkpoints", str(SIGTERM_AT + 1))
  data_files = sorted(os.listdir(os.path.join(step_dir, "data")))
  assert any("process_0" in f for f in data_files) and any("process_1" in f for f in data_files), \
      data_files

  _run_two([sys.executable, "-m", "mmscale.train", f"--config={config_py}",
            f"--workdir={workdir}"], tmp_path, "resume")

  reference = str(tmp_path / "one")
  train(_config(tiny_world), reference)
  two, one = _losses(workdir), _losses(reference)
  assert [s for s, _ in two] == list(range(1, STEPS + 1))  # process 0 alone wrote the history
  assert [s for s, _ in one] == list(range(1, STEPS + 1))
  np.testing.assert_allclose([l for _, l in two], [l for _, l in one], rtol=1e-5)
