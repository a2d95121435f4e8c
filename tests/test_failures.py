"""Fault injection through the command lines: every mistake a user can make ends in one
`error: ...` line naming the field, flag or file (exit 2 for usage, 1 for a failed run), never a
traceback; and a run that diverges before its first save says that nothing is kept
(docs/failures.md lists each case)."""

import os
import subprocess
import sys

import pytest

from mmscale.scaling.spec import Point, check_point
from mmscale.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = [sys.executable, "-m", "mmscale.train"]
SWEEP = [sys.executable, "-m", "mmscale.sweep"]
TINY = "configs/world/tiny.py"
# a model small enough that the divergence scenario compiles in seconds
SMALL = ["--config.model.vit.width=32", "--config.model.vit.depth=1", "--config.model.vit.mlp_dim=64",
         "--config.model.decoder.width=32", "--config.model.decoder.depth=1",
         "--config.model.decoder.mlp_dim=64", "--config.model.connector.hidden_dim=64",
         "--config.data.batch_size=8", "--config.train.log_every=1"]


def _scenarios(world, tmp):
  workdir = f"--workdir={tmp}/run"
  good_world = f"--config.data.world_dir={world}"
  return {
      # name: (argv, exit status, words the one error line must contain)
      "config arg: unknown value": (TRAIN + [f"--config={TINY}:size=xl", workdir, good_world], 2,
                                    ["argument 'size'", "'xl'"]),
      "config arg: unknown key": (TRAIN + [f"--config={TINY}:stepz=5", workdir], 2,
                                  ["argument 'stepz'", "steps"]),
      "config arg: wrong type": (TRAIN + [f"--config={TINY}:steps=abc", workdir], 2,
                                 ["argument 'steps'", "int", "'abc'"]),
      "unknown override": (TRAIN + [f"--config={TINY}", "--config.train.stepz=5", workdir], 2,
                           ["--config.train.stepz", "'train.stepz'", "did you mean 'steps'"]),
      "override of the wrong type": (TRAIN + [f"--config={TINY}", "--config.train.steps=abc",
                                              workdir], 2, ["--config.train.steps=abc"]),
      "missing config file": (TRAIN + ["--config=configs/world/nope.py", workdir], 2,
                              ["configs/world/nope.py", "does not exist"]),
      "wrong world_dir": (TRAIN + [f"--config={TINY}", "--config.data.world_dir=/no/world",
                                   workdir], 2, ["data.world_dir", "/no/world/tokenizer.model"]),
      "kv_heads vs tensor axis": (TRAIN + [f"--config={TINY}", good_world, workdir,
                                           "--config.mesh.shape.tensor=4"], 2,
                                  ["model.decoder.kv_heads", "tensor"]),
      "diverges before the first save": (
          TRAIN + [f"--config={TINY}:steps=6", good_world, f"--workdir={tmp}/diverged",
                   "--config.optim.lr=1e6", "--config.optim.warmup_steps=1",
                   "--config.train.checkpoint_every=5"] + SMALL, 1,
          ["training diverged", "No checkpoint is kept"]),
      "sweep: missing sweep file": (SWEEP + ["--sweep=configs/sweeps/nope.py",
                                             f"--sweep_dir={tmp}/sw"], 2, ["nope.py"]),
      "sweep: bad --override": (SWEEP + ["--sweep=configs/sweeps/smoke.py", "--override=x",
                                         f"--sweep_dir={tmp}/sw"], 2, ["override 'x'"]),
      "sweep: dry run of an unknown field": (
          SWEEP + ["--sweep=configs/sweeps/smoke.py", "--override=train.stepz=5", "--dry_run",
                   f"--sweep_dir={tmp}/sw"], 2, ["sweep point", "'train.stepz'"]),
      "ingest: mistyped flag": (
          [sys.executable, "tools/ingest.py", "--source=llava", f"--input={tmp}/x.json",
           f"--out={tmp}/ing", "--nmu_shards=3"], 2, ["--nmu_shards=3"]),
      "ingest: not JSON": ([sys.executable, "tools/ingest.py", "--source=llava",
                            f"--input={tmp}/bad.json", f"--out={tmp}/ing"], 1,
                           ["bad.json", "not a JSON file"]),
  }


@pytest.mark.slow
def test_every_mistake_is_one_line(tiny_world, tmp_path):
  (tmp_path / "bad.json").write_text('[{"id": 1, ')
  env = {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu"}
  scenarios = _scenarios(tiny_world, tmp_path)
  running = {name: subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
             for name, (argv, _, _) in scenarios.items()}
  failures = []
  for name, proc in running.items():
    out, err = proc.communicate(timeout=600)
    _, status, words = scenarios[name]
    errors = [l for l in (out + err).splitlines() if l.startswith("error: ")]
    ok = (proc.returncode == status and len(errors) == 1 and "Traceback" not in out + err
          and all(w in errors[0] for w in words))
    if not ok:
      failures.append(f"{name}: exit {proc.returncode} (want {status}), error lines {errors}, "
                      f"tail {(out + err)[-600:]!r}")
  assert not failures, "\n".join(failures)
  assert not os.listdir(tmp_path / "diverged" / "checkpoints")  # nothing kept, as it says


def test_sweep_values_parse_as_the_config_flags_parse_them():
  """A point's overrides are parsed by ml_collections' config flag, as the entry points do."""
  point = Point(name="p", config="configs/world/tiny.py",
                overrides=(("data.pack", "0"), ("eval.evals", "('vqa', 'ranked')"),
                           ("eval.fewshot_shots", "(0, 2)"), ("train.steps", "7")))
  config = point.load()
  assert config.data.pack is False  # absl's boolean parser: 0/false
  assert tuple(config.eval.evals) == ("vqa", "ranked") and tuple(config.eval.fewshot_shots) == (0, 2)
  assert config.train.steps == 7
  with pytest.raises(ConfigError, match=r"sweep point 'p'.*--config.data.pack=maybe"):
    Point(name="p", config="configs/world/tiny.py", overrides=(("data.pack", "maybe"),)).load()
  with pytest.raises(ConfigError, match=r"sweep point 'p'.*'train.stepz'"):
    check_point(Point(name="p", config="configs/world/tiny.py", overrides=(("train.stepz", 5),)))


def test_errors_pickle_and_survive_a_one_argument_reraise():
  """Worker processes send errors back pickled; absl and ml_collections re-raise `type(e)(text)`."""
  import pickle  # pylint: disable=import-outside-toplevel
  from mmscale.errors import DataError, UnknownNameError  # pylint: disable=import-outside-toplevel
  for error in (ConfigError("train.steps", "expected >= 1, got 0"),
                ConfigError("configs/x.py argument 'size'", "expected s or m"),
                UnknownNameError("unknown connector 'x'; known: mlp"), DataError("too many skips")):
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == str(error)
  assert str(ConfigError("train.steps", "x")) == "config field 'train.steps': x"
  rewrapped = ConfigError("Error whilst parsing config file:\n...")  # one argument: the message
  assert str(rewrapped).startswith("Error whilst parsing") and rewrapped.field == ""
