"""Remote workdirs: a run trained into `gs://` is evaluated (`python -m mmscale.eval`), generated
from, exported (Orbax and Hugging Face), probed, collected into learning curves, swept and
reported on through gs:// paths alone. Every result lands in the bucket, and nothing named `gs:`
appears in the working directory (what `os.path.abspath("gs://b/run")` would create).

The bucket is a GCS emulator on 127.0.0.1 that the real clients talk to (tests/gcs_helpers.py):
epath through gcsfs, Orbax's arrays through tensorstore's gcs driver, TensorBoard event files
through tensorboardX's GCS writer (training runs here with the TensorFlow-free metric writer, as
on a TPU VM with the base install; TensorFlow's own GCS client cannot be pointed at an emulator).
"""

import importlib.util
import io
import json
import os
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

import gcs_helpers
from conftest import tiny_train_config
from mmscale import extras, paths

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 4


def _tool(name):
  spec = importlib.util.spec_from_file_location(f"{name}_tool", os.path.join(REPO, "tools",
                                                                          f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _local_gs_dirs(root) -> list[str]:
  """What `os.path.abspath("gs://b/run")` run from `root` creates: `root/gs:`."""
  return [n for n in os.listdir(root) if n.startswith("gs:")]


@pytest.fixture(scope="module")
def remote(tiny_world, tmp_path_factory):
  """(bucket URL, run URL): a tiny run trained into the bucket; the working directory is an
  empty local folder for the whole module, checked for a stray `gs:` folder at the end."""
  from mmscale.train.trainer import train  # pylint: disable=import-outside-toplevel
  config = tiny_train_config(tiny_world, steps=STEPS, checkpoint_every=2, keep_checkpoints=2)
  config.model.decoder.scale_embeddings = False  # exportable as a Hugging Face text model
  config.eval.update(evals=("heldout_loss",), max_examples=8)
  mp = pytest.MonkeyPatch()
  cwd = tmp_path_factory.mktemp("cwd")
  with gcs_helpers.fake_gcs(mp) as bucket:
    mp.setattr(extras, "available", lambda module: module != "tensorflow")
    mp.syspath_prepend(REPO)  # tools/ import mmscale from the repository
    mp.chdir(cwd)
    run = f"{bucket}/runs/tiny"
    train(config, run)
    yield bucket, run, cwd
    assert _local_gs_dirs(cwd) == [] and _local_gs_dirs(REPO) == []


def test_training_wrote_the_run_into_the_bucket(remote):
  _, run, cwd = remote
  names = paths.listdir(run)
  assert {"checkpoints", "config.json", "metrics.jsonl", "tensorboard"} <= set(names)
  assert paths.listdir(f"{run}/checkpoints") == ["2", "4"]
  assert any(n.startswith("events.out.tfevents") for n in paths.listdir(f"{run}/tensorboard"))
  assert os.listdir(cwd) == []


def test_eval_command_reads_and_writes_the_bucket(remote):
  """The reported bug: `python -m mmscale.eval --workdir=gs://...` found no checkpoint and wrote
  its results to a local folder named `gs:`."""
  _, run, cwd = remote
  done = subprocess.run([sys.executable, "-m", "mmscale.eval", f"--workdir={run}",
                         "--evals=heldout_loss"], cwd=cwd, capture_output=True, text=True,
                        env={**os.environ, "PYTHONPATH": REPO}, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  assert f"results: {run}/eval/results.json" in done.stdout
  results = paths.read_json(f"{run}/eval/results.json")
  assert results["step"] == STEPS and results["metric_steps"]["heldout/loss"] == STEPS
  step_file = paths.read_json(f"{run}/eval/step_{STEPS}.json")
  assert step_file["heldout/loss"] == results["heldout/loss"] > 0
  assert os.listdir(cwd) == []


def test_generate_from_the_bucket_with_a_remote_image(remote):
  from mmscale.eval import generate_cli  # pylint: disable=import-outside-toplevel
  bucket, run, _ = remote
  png = io.BytesIO()
  Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(png, format="PNG")
  image = paths.write_bytes(f"{bucket}/images/a.png", png.getvalue())
  text = generate_cli.run(run, None, None, [image], "what is it?", max_new_tokens=3,
                          temperature=0.0, top_p=1.0, seed=0)
  assert isinstance(text, str)


def test_export_to_the_bucket_and_evaluate_the_export(remote):
  from mmscale.eval.loading import load_run  # pylint: disable=import-outside-toplevel
  bucket, run, _ = remote
  export = _tool("export")
  out = f"{bucket}/exports/tiny"
  assert export.main(["export", f"--workdir={run}", f"--out={out}"]) is None
  assert {"params", "config.json", "export.json", "tokenizer.model"} <= set(paths.listdir(out))
  assert paths.read_json(f"{out}/export.json") == {"source_workdir": run, "step": STEPS,
                                                    "dtype": "float32"}
  trained, _ = load_run(run)
  exported, step = load_run(params_dir=out)  # config and params from the bucket
  assert step == -1
  with ocp.StandardCheckpointer() as ckptr:  # plain Orbax reads the exported params there
    plain = ckptr.restore(paths.path(f"{out}/params"))
  for a, b, c in zip(*(jax.tree.leaves(jax.device_get(t))
                       for t in (trained.params, exported.params, plain))):
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
  hf = f"{bucket}/exports/tiny_hf"
  export.main(["export", f"--workdir={run}", f"--out={hf}", "--format=text"])
  assert {"model.safetensors", "config.json", "tokenizer.model"} <= set(paths.listdir(hf))
  assert paths.read_json(f"{hf}/config.json")["num_hidden_layers"] == 2


def test_probe_writes_its_centroids_and_results_into_the_bucket(remote, monkeypatch, capsys):
  """tools/probe.py on a bucket run: the centroids are fitted on the run's params and written
  there, reused by a second call, and found by TCCD decoding. The erasure and TCCD evaluations
  (`probe.run`: five decoding programs to compile, tests/test_analysis_*.py test them) are
  replaced by a fixed result; their outputs are what the tool writes."""
  from mmscale.analysis import probe as probe_lib  # pylint: disable=import-outside-toplevel
  _, run, _ = remote
  result = {"layers": [1], "k": 2, "beta": 0.1, "alphas": [0.0], "num_questions": 1,
            "majority": {}, "erasure": {"all": {"base": 0.5, "text_erased": 0.25,
                                                "image_erased": 0.5}},
            "tccd": {"0.0": {"all": {"accuracy": 0.5, "gain": 0.0}}}}
  monkeypatch.setattr(probe_lib, "run", lambda *a, **k: dict(result))
  monkeypatch.setattr(probe_lib, "format_report", lambda r: "probe report")
  argv = ["probe", f"--workdir={run}", "--layers=1", "--k=2", "--calib_examples=16",
          "--batch_size=8"]
  probe = _tool("probe")
  probe.main(argv)
  out = f"{run}/analysis/probe_l1_k2"
  assert {"centroids.npz", "centroids.json", "probe.json", "probe.png"} <= set(paths.listdir(out))
  assert paths.read_bytes(f"{out}/probe.png").startswith(b"\x89PNG")
  assert paths.read_json(f"{out}/probe.json")["erasure"] == result["erasure"]
  meta = paths.read_json(f"{out}/centroids.json")
  assert (meta["workdir"], meta["step"], meta["layers"], meta["k"]) == (run, STEPS, [1], 2)
  printed = capsys.readouterr().out
  assert "fitted centroids" in printed and f"results: {out}/probe.json" in printed
  probe.main(argv)
  assert f"reusing centroids in {out}" in capsys.readouterr().out
  # TCCD decoding finds the run's default centroids (the latest fit) in the bucket
  from mmscale.eval import contrastive  # pylint: disable=import-outside-toplevel
  from mmscale.eval.loading import read_run_config  # pylint: disable=import-outside-toplevel
  config = read_run_config(run)
  config.eval.tccd_alpha = 1.0
  text, info = contrastive.load_text_layers(config, run)
  assert info["tccd_centroids"] == f"{run}/analysis/centroids.npz"
  assert text["centroids"].shape == (2, 2, 64)


def test_curves_and_report_read_and_write_the_bucket(remote):
  from mmscale.eval.runner import write_results  # pylint: disable=import-outside-toplevel
  bucket, run, _ = remote
  write_results(run, 1, {"vqa/accuracy/all": 0.25, "heldout/loss": 3.0})  # an early evaluation
  csv_path = f"{bucket}/reports/curves.csv"
  assert _tool("curves").main(["curves", f"--run=tiny={run}", f"--out={csv_path}"]) == 0
  rows = paths.read_text(csv_path).splitlines()
  assert rows[0].startswith("run,step,tokens") and rows[1].startswith("tiny,1,")
  from mmscale.scaling import results as results_lib  # pylint: disable=import-outside-toplevel
  row = {"name": "tiny", "group": "g", "arm": "vqa", "seed": 0, "flops": 1e12,
         **results_lib.read_metrics(run), **results_lib.read_eval(run)}
  row["vqa/accuracy/all"] = 0.5
  sweep_dir = f"{bucket}/sweeps/one"
  results_lib.write_table(sweep_dir, [row], [], [])
  assert results_lib.read_table(sweep_dir)[0]["final_step"] == STEPS
  assert results_lib.read_table(f"{sweep_dir}/results.csv")[0]["final_step"] == STEPS
  assert _tool("report").main(["report", f"--sweep_dir={sweep_dir}",
                               f"--curves={csv_path}"]) == 0
  report = paths.read_text(f"{sweep_dir}/report.md")
  assert "## Learning curves" in report and "(report_plots/curve_tiny.png)" in report
  assert paths.read_bytes(f"{sweep_dir}/report_plots/curve_tiny.png").startswith(b"\x89PNG")


FAKE_TRAIN = '''
import json, sys
from etils import epath
args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
w = epath.Path(args["--workdir"])
w.mkdir(parents=True, exist_ok=True)
(w / "metrics.jsonl").write_text(json.dumps({"step": 10, "loss": 0.5, "tflops_per_device": 2e-3,
                                              "tokens_per_s_per_device": 1e3}) + "\\n")
print("trained into", w)
'''

FAKE_EVAL = '''
import json, sys
from etils import epath
args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
w = epath.Path(args["--workdir"])
(w / "eval").mkdir(parents=True, exist_ok=True)
(w / "eval" / "results.json").write_text(json.dumps({"step": 10, "vqa/accuracy/all": 0.6}))
'''


def test_sweep_runs_points_into_the_bucket(remote, tmp_path, monkeypatch, capsys):
  """A sweep whose DIR is a bucket path: the launch commands name the bucket workdirs, and the
  markers, logs and results table are written there (the entry points are fakes that write
  what the real ones do, through epath)."""
  from mmscale.scaling import cli as sweep_cli  # pylint: disable=import-outside-toplevel
  bucket, _, cwd = remote
  (tmp_path / "fake_train.py").write_text(FAKE_TRAIN)
  (tmp_path / "fake_eval.py").write_text(FAKE_EVAL)
  monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{REPO}")
  monkeypatch.chdir(REPO)
  sweep_dir = f"{bucket}/sweeps/smoke"
  argv = ["sweep", "--sweep=configs/sweeps/smoke.py", f"--sweep_dir={sweep_dir}",
          "--only=vqa", "--train_module=fake_train", "--eval_module=fake_eval",
          f"--override=data.world_dir={tmp_path / 'no_world'}"]
  assert sweep_cli.main(argv) == 0
  point = f"{sweep_dir}/points/vqa_xs_seed0"
  assert {"DONE", "point.json", "log.txt", "metrics.jsonl", "eval"} <= set(paths.listdir(point))
  assert f"--workdir={point}" in paths.read_json(f"{point}/point.json")["commands"][0]
  assert f"trained into {point}" in paths.read_text(f"{point}/log.txt")
  table = json.loads(paths.read_text(f"{sweep_dir}/results.json"))
  assert [(r["name"], r["vqa/accuracy/all"], r["final_loss"]) for r in table["rows"]] == [
      ("vqa_xs_seed0", 0.6, 0.5)]
  assert f"results: {sweep_dir}/results.csv" in capsys.readouterr().out
  assert sweep_cli.main(argv) == 0  # a rerun finds the point done in the bucket
  assert paths.read_text(f"{point}/log.txt").count("$ ") == 2  # train, eval: not rerun
  assert _local_gs_dirs(REPO) == [] and os.listdir(cwd) == []
