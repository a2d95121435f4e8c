"""Sweeps: dry-run commands for tpu/slurm are complete and runnable; an interrupted sweep
finishes only its missing points; the table holds config, commit, budget, FLOPs and eval;
`--workers=2` gives the same table, runs at most two points at once, each on its own CPUs.

The trainer and evaluator are replaced by tiny fake entry-point modules (`--train_module`,
`--eval_module`) so these tests take seconds; they write what the real ones write
(metrics.jsonl, eval/results.json). `gcloud`, `sbatch` and `srun` are fake scripts on PATH that
execute the command they are given, which is what makes "runnable" checkable here.
"""

import json
import os
import shlex
import stat
import sys
import threading
import time

import jax
import pytest

from mmscale.scaling import cli as sweep_cli
from mmscale.scaling import results as results_lib
from mmscale.scaling import spec as spec_lib
from mmscale.scaling import sweep as sweep_lib
from mmscale.scaling.launchers import LaunchOptions, Outcome

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FAKE_TRAIN = '''
import json, os, sys, time
args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
w = args["--workdir"]
os.makedirs(w, exist_ok=True)
with open(os.environ["FAKE_CALLS"], "a") as f:
  f.write("train " + os.path.basename(w) + "\\n")
if os.environ.get("FAKE_AFFINITY"):
  with open(os.environ["FAKE_AFFINITY"], "a") as f:
    cpus = ",".join(map(str, sorted(os.sched_getaffinity(0))))
    f.write(os.path.basename(w) + " " + cpus + "\\n")
if os.environ.get("FAKE_SLOW") == os.path.basename(w):
  time.sleep(1.0)
if os.environ.get("FAKE_FAIL") and os.environ["FAKE_FAIL"] in w:
  print("simulated crash in " + w); sys.exit(3)
with open(os.path.join(w, "metrics.jsonl"), "a") as f:
  for step in (1, 5, 10):
    f.write(json.dumps({"step": step, "loss": 5.0 / step, "tflops_per_device": 2e-3,
                        "tokens_per_s_per_device": 1e3}) + "\\n")
'''

FAKE_EVAL = '''
import json, os, sys
args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
w = args["--workdir"]
with open(os.environ["FAKE_CALLS"], "a") as f:
  f.write("eval " + os.path.basename(w) + "\\n")
acc = 0.6 if "vqa" in os.path.basename(w) else 0.4
os.makedirs(os.path.join(w, "eval"), exist_ok=True)
with open(os.path.join(w, "eval", "results.json"), "w") as f:
  json.dump({"step": 10, "vqa/accuracy/all": acc, "vqa/accuracy/count": acc + 0.1,
             "vqa/majority/all": 0.3, "heldout/loss": 1.5}, f)
'''

FAKE_TOOLS = {
    # gcloud compute tpus tpu-vm ssh NAME --zone=Z --worker=all --command=CMD
    "gcloud": '#!/usr/bin/env bash\nfor a in "$@"; do case "$a" in --command=*) '
              'exec bash -c "${a#--command=}";; esac; done\nexit 9\n',
    "sbatch": '#!/usr/bin/env bash\nfor a in "$@"; do case "$a" in --wrap=*) '
              'bash -c "${a#--wrap=}" >/dev/null || exit 1;; esac; done\necho 4242\n',
    "srun": '#!/usr/bin/env bash\nexec "$@"\n',
}


@pytest.fixture
def fakes(tmp_path, monkeypatch):
  mods = tmp_path / "mods"
  mods.mkdir()
  (mods / "fake_train.py").write_text(FAKE_TRAIN)
  (mods / "fake_eval.py").write_text(FAKE_EVAL)
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  for name, text in FAKE_TOOLS.items():
    (bin_dir / name).write_text(text)
    (bin_dir / name).chmod(stat.S_IRWXU)
  monkeypatch.setenv("PYTHONPATH", f"{mods}{os.pathsep}{REPO}")
  monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
  monkeypatch.setenv("FAKE_CALLS", str(tmp_path / "calls.txt"))
  monkeypatch.chdir(REPO)
  return tmp_path


def _calls(tmp_path):
  path = tmp_path / "calls.txt"
  return path.read_text().split("\n")[:-1] if path.exists() else []


def _argv(tmp_path, *extra, sweep="configs/sweeps/smoke.py", sweep_dir="sweep"):
  return ["sweep", f"--sweep={sweep}", f"--sweep_dir={tmp_path / sweep_dir}",
          "--train_module=fake_train", "--eval_module=fake_eval",
          f"--override=data.world_dir={tmp_path / 'no_world'}", *extra]


@pytest.mark.parametrize("launcher", ["tpu", "slurm"])
def test_dry_run_prints_complete_commands(launcher, tmp_path, capsys):
  os.chdir(REPO)
  sweep_cli.main(["sweep", "--sweep=configs/sweeps/density_cpu.py", f"--sweep_dir={tmp_path}",
                  f"--launcher={launcher}", "--dry_run"])
  out = capsys.readouterr().out.strip().split("\n")
  points = spec_lib.load_sweep("configs/sweeps/density_cpu.py")
  assert len(points) == 21 and sum(line.startswith("# ") for line in out) == 21
  for point in points:
    block = out[out.index(f"# {point.name}") + 1:]
    command = block[0] if launcher == "tpu" else block[1]
    argv = shlex.split(command)
    inner = next(a.split("=", 1)[1] for a in argv if a.startswith(("--command=", "--wrap=")))
    train, evaluate = inner.split(" && ")[1:]
    workdir = os.path.join(str(tmp_path), "points", point.name)
    for part, module in ((train, "mmscale.train"), (evaluate, "mmscale.eval")):
      words = shlex.split(part)
      assert words[words.index("-m") + 1] == module
      assert f"--config={point.config}" in words and f"--workdir={workdir}" in words
    assert argv[0] == ("gcloud" if launcher == "tpu" else "sbatch")
    if launcher == "tpu":
      assert argv[1:5] == ["compute", "tpus", "tpu-vm", "ssh"] and "--worker=all" in argv


@pytest.mark.parametrize("launcher", ["tpu", "slurm"])
def test_launch_commands_run(launcher, fakes):
  """The emitted commands execute (fake gcloud/sbatch/srun run what they are given)."""
  argv = _argv(fakes, f"--launcher={launcher}", f"--repo_dir={REPO}",
               f"--python={sys.executable}")
  rc = sweep_cli.main(argv)
  if launcher == "slurm":  # submitted; a second run collects the finished jobs
    assert rc == 2
    assert sweep_cli.main(argv + ["--collect_only"]) == 0
  else:
    assert rc == 0
  rows = results_lib.read_table(str(fakes / "sweep"))
  assert [r["name"] for r in rows] == ["caption_xs_seed0", "vqa_xs_seed0"]


def test_interrupted_sweep_finishes_only_missing_points(fakes, monkeypatch, capsys):
  monkeypatch.setenv("FAKE_FAIL", "vqa_xs")
  assert sweep_cli.main(_argv(fakes, "--retries=1")) == 1
  out = capsys.readouterr().out
  assert "FAILED vqa_xs_seed0 after 2 attempt(s)" in out and "simulated crash" in out
  assert _calls(fakes) == ["train caption_xs_seed0", "eval caption_xs_seed0",
                           "train vqa_xs_seed0", "train vqa_xs_seed0"]
  data = json.loads((fakes / "sweep" / "results.json").read_text())
  assert [r["name"] for r in data["rows"]] == ["caption_xs_seed0"]
  assert data["failed"][0]["name"] == "vqa_xs_seed0"

  monkeypatch.delenv("FAKE_FAIL")
  (fakes / "calls.txt").unlink()
  assert sweep_cli.main(_argv(fakes)) == 0
  assert _calls(fakes) == ["train vqa_xs_seed0", "eval vqa_xs_seed0"]
  (fakes / "calls.txt").unlink()
  assert sweep_cli.main(_argv(fakes)) == 0  # everything done: nothing runs
  assert _calls(fakes) == []

  rows = results_lib.read_table(str(fakes / "sweep" / "results.csv"))
  assert [r["name"] for r in rows] == ["caption_xs_seed0", "vqa_xs_seed0"]
  row = rows[1]
  assert row["arm"] == "vqa" and row["size"] == "xs" and row["seed"] == 0
  assert row["steps"] == 10 and row["tokens_trained"] == 10 * 8 * 64 == row["tokens"]
  assert row["flops"] == pytest.approx(2e6 * 10 * 8 * 64)
  assert row["final_loss"] == pytest.approx(0.5)
  assert row["vqa/accuracy/all"] == pytest.approx(0.6) and row["git_commit"]
  recorded = json.loads(row["package_versions"])
  assert recorded["jax"] == jax.__version__ and set(recorded) >= {"flax", "optax", "grain"}


def test_point_with_results_is_collected_not_rerun(fakes):
  """A sweep killed after eval but before DONE: the rerun collects without training again."""
  workdir = fakes / "sweep" / "points" / "caption_xs_seed0"
  (workdir / "eval").mkdir(parents=True)
  (workdir / "eval" / "results.json").write_text(json.dumps({"step": 10,
                                                             "vqa/accuracy/all": 0.5}))
  assert sweep_cli.main(_argv(fakes)) == 0
  assert _calls(fakes) == ["train vqa_xs_seed0", "eval vqa_xs_seed0"]


def test_only_selects_points(fakes, capsys):
  sweep_cli.main(_argv(fakes, "--only=vqa*", "--dry_run"))
  out = capsys.readouterr().out
  assert "# vqa_xs_seed0" in out and "caption_xs_seed0" not in out


FOUR_POINTS = """
def get_sweep(arg=None):
  return [{"name": f"{arm}_xs_seed{seed}", "tags": {"group": "parallel"},
           "config": f"configs/scaling/point.py:size=xs,arm={arm},tokens=5120,seed={seed},batch=8"}
          for seed in (0, 1) for arm in ("vqa", "caption")]
"""


def _table(sweep_dir):
  """The rows without wall_s (the only column that differs between two runs of a point)."""
  return [{k: v for k, v in row.items() if k != "wall_s"}
          for row in results_lib.read_table(str(sweep_dir))]


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # JAX, which only tests import
def test_workers_give_the_same_table_pinned(fakes, monkeypatch):
  """Two workers: the same rows in the same order as one, though the first point ends last;
  each point's train ran on its slot's CPUs, which its log names."""
  sweep = fakes / "four.py"
  sweep.write_text(FOUR_POINTS)
  names = ["vqa_xs_seed0", "caption_xs_seed0", "vqa_xs_seed1", "caption_xs_seed1"]
  monkeypatch.setenv("FAKE_SLOW", "vqa_xs_seed0")
  assert sweep_cli.main(_argv(fakes, "--workers=1", sweep=sweep, sweep_dir="one")) == 0
  monkeypatch.setenv("FAKE_AFFINITY", str(fakes / "affinity.txt"))
  assert sweep_cli.main(_argv(fakes, "--workers=2", sweep=sweep, sweep_dir="two")) == 0
  assert [r["name"] for r in _table(fakes / "two")] == names
  assert _table(fakes / "two") == _table(fakes / "one")
  assert sorted(_calls(fakes)) == sorted(2 * [f"{s} {n}" for n in names for s in ("train", "eval")])
  if not hasattr(os, "sched_setaffinity"):
    return
  shares = {",".join(map(str, cpus)) for cpus in sweep_lib.split_cpus(os.sched_getaffinity(0), 2)}
  ran_on = dict(line.split(" ") for line in (fakes / "affinity.txt").read_text().splitlines())
  assert sorted(ran_on) == sorted(names) and set(ran_on.values()) <= shares
  for name, cpus in ran_on.items():
    log = (fakes / "two" / "points" / name / "log.txt").read_text()
    assert f" --workdir={fakes / 'two' / 'points' / name}  # cpus={cpus}\n" in log


class _RecordingLauncher:
  """Stands in for LocalLauncher: records when each point ran and on which CPUs, then writes
  the eval results the real entry points would."""

  def __init__(self):
    self.runs, self._lock = [], threading.Lock()

  def commands(self, job):
    return [f"fake {job.point.name}"]

  def run(self, job, log_path, cpus=None):
    del log_path
    start = time.monotonic()
    time.sleep(0.15)
    os.makedirs(os.path.join(job.workdir, "eval"), exist_ok=True)
    with open(os.path.join(job.workdir, "eval", "results.json"), "w") as f:
      json.dump({"step": 10, "vqa/accuracy/all": 0.5}, f)
    with self._lock:
      self.runs.append((start, time.monotonic(), cpus, job.point.name))
    return Outcome("done")


def test_workers_run_at_most_n_points_on_distinct_slots(tmp_path, monkeypatch):
  """Six points, two workers: never more than two at once, two points running at the same time
  never share a slot (each slot's CPU set is unique here), and both slots are reused."""
  monkeypatch.chdir(REPO)
  shares = [(10, 11), (12, 13)]
  monkeypatch.setattr(sweep_lib, "cpu_shares", lambda workers: shares[:workers])
  points = [spec_lib.make_point({"name": f"p{i}", "config": "configs/scaling/point.py:size=xs"},
                                {"data.world_dir": str(tmp_path / "no_world")}) for i in range(6)]
  opts = sweep_lib.SweepOptions(sweep_dir=str(tmp_path), workers=2, repo_dir=REPO)
  sweep = sweep_lib.Sweep(points, opts, LaunchOptions())
  sweep.launcher = _RecordingLauncher()
  assert sweep.run() == {"done": [p.name for p in points]}
  runs = sweep.launcher.runs
  assert sorted(r[3] for r in runs) == [p.name for p in points]
  assert {r[2] for r in runs} == set(shares)
  for start, _, _, _ in runs:
    running = [r for r in runs if r[0] <= start < r[1]]
    assert len(running) <= 2 and len({r[2] for r in running}) == len(running)
  assert any(a[0] < b[1] and b[0] < a[1] for a in runs for b in runs if a is not b)


def test_split_cpus():
  assert sweep_lib.split_cpus({4, 0, 1, 2, 3}, 2) == [(0, 1), (2, 3, 4)]
  assert sweep_lib.split_cpus(range(4), 4) == [(0,), (1,), (2,), (3,)]
  assert sweep_lib.split_cpus([7], 3) == [(7,), (7,), (7,)]  # fewer CPUs than workers: shared


@pytest.mark.parametrize("flags", [["--workers=0"], ["--workers=2", "--launcher=slurm"],
                                   ["--workers=2", "--launcher=tpu", "--dry_run"]])
def test_cli_rejects_bad_workers(flags, tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    sweep_cli.main(_argv(tmp_path, *flags))
  assert exit_info.value.code == 2 and "--workers" in capsys.readouterr().err


def test_dry_run_ignores_workers(tmp_path, capsys):
  os.chdir(REPO)
  outs = []
  for workers in (1, 3):
    sweep_cli.main(_argv(tmp_path, f"--workers={workers}", "--dry_run"))
    outs.append(capsys.readouterr().out)
  assert outs[0] == outs[1] and "# vqa_xs_seed0" in outs[0]
