"""Sweeps: dry-run commands for tpu/slurm are complete and runnable; an interrupted sweep
finishes only its missing points; the table holds config, commit, budget, FLOPs and eval.

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

import pytest

from mmscale import sweep as sweep_cli
from mmscale.scaling import results as results_lib
from mmscale.scaling import spec as spec_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FAKE_TRAIN = '''
import json, os, sys
args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
w = args["--workdir"]
os.makedirs(w, exist_ok=True)
with open(os.environ["FAKE_CALLS"], "a") as f:
  f.write("train " + os.path.basename(w) + "\\n")
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


def _argv(tmp_path, *extra, sweep="configs/sweeps/smoke.py"):
  return [f"--sweep={sweep}", f"--sweep_dir={tmp_path / 'sweep'}",
          "--train_module=fake_train", "--eval_module=fake_eval",
          f"--override=data.world_dir={tmp_path / 'no_world'}", *extra]


@pytest.mark.parametrize("launcher", ["tpu", "slurm"])
def test_dry_run_prints_complete_commands(launcher, tmp_path, capsys):
  os.chdir(REPO)
  sweep_cli.main([f"--sweep=configs/sweeps/density_cpu.py", f"--sweep_dir={tmp_path}",
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
