"""Command-line tools on absl flags (mmscale/cli_flags.py): every tool imports next to the others
without a duplicate flag, prints its flags on --help, turns a bad command line into one
`error: ...` line with exit status 2, and starts each parse from the defaults."""

import importlib.util
import os
import subprocess
import sys

import pytest
from absl import flags

from mmscale import cli_flags
from mmscale.eval import generate_cli
from mmscale.launch import local_multiprocess, slurm, tpu
from mmscale.scaling import cli as sweep_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ["tools/build_world.py", "tools/report.py", "tools/enrich.py", "tools/density.py",
           "tools/train_tokenizer.py", "tools/ingest.py", "tools/inspect_data.py",
           "tools/curves.py", "tools/results_table.py", "tools/export.py", "tools/probe.py",
           "tools/pod_table.py",
           "bench/enrich.py",
           "bench/matmul_peak.py", "bench/data_pipeline.py", "bench/train_step.py",
           "bench/generate.py", "bench/attention.py", "bench/hlo_copies.py"]

BEAM_TOOLS = {"tools/enrich.py": "stage", "tools/ingest.py": "source"}  # their first required flag


def _script(path):
  name = "cli_" + path.replace("/", "_")[:-3]
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, path))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def _mains():
  mods = {path: _script(path) for path in SCRIPTS}
  mods.update({"mmscale.sweep": sweep_cli, "mmscale.generate": generate_cli,
               "mmscale.launch.tpu": tpu,
               "mmscale.launch.slurm": slurm,
               "mmscale.launch.local_multiprocess": local_multiprocess})
  return {name: mod.main for name, mod in mods.items()}


@pytest.mark.parametrize("name", SCRIPTS + ["mmscale.sweep", "mmscale.generate",
                                            "mmscale.launch.tpu",
                                            "mmscale.launch.slurm",
                                            "mmscale.launch.local_multiprocess"])
def test_help_and_a_bad_flag(name, capsys):
  main = _mains()[name]  # all of them loaded together: no DuplicateFlagError
  with pytest.raises(SystemExit) as exit_info:
    main([name, "--help"])
  out = capsys.readouterr().out
  assert exit_info.value.code == 0 and "\nflags:\n  --" in out
  with pytest.raises(SystemExit) as exit_info:
    main([name, "--no_such_flag=1", "--", "x"])
  err = capsys.readouterr().err
  assert exit_info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
  if name in BEAM_TOOLS:  # unknown flags are Beam's: the missing required ones are the error
    first = BEAM_TOOLS[name]
    assert err == f"error: --{first} is required; --input is required; --out is required\n"
  else:
    assert err == "error: Unknown command line flag 'no_such_flag'\n"


def test_each_parse_starts_from_the_defaults():
  argv = ["sweep", "--sweep=s.py", "--sweep_dir=d", "--override=a=1", "--override=b=2"]
  assert sweep_cli.parse_flags(argv).override == ["a=1", "b=2"]
  assert sweep_cli.parse_flags(argv[:3]).override == []


def test_positional_arguments_and_errors(capsys):
  define = lambda fv: flags.DEFINE_integer("n", 1, "a number", flag_values=fv)  # noqa: E731
  fv, rest = cli_flags.parse(define, ["p", "a", "--n", "3", "b", "--", "--n=4"], positional=True)
  assert (fv.n, rest) == (3, ["p", "a", "b", "--n=4"])
  for argv in (["p", "a"], ["p", "--n=x"]):
    with pytest.raises(SystemExit) as exit_info:
      cli_flags.parse(define, argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_sweep_entry_point_runs_the_command(tmp_path):
  """`python -m mmscale.sweep` through absl.app: a dry run prints its points; a bad flag is one
  error line, exit status 2, no traceback."""
  cmd = [sys.executable, "-m", "mmscale.sweep", "--sweep=configs/sweeps/smoke.py",
         f"--sweep_dir={tmp_path}", "--dry_run"]
  ok = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert ok.returncode == 0 and "# vqa_xs_seed0" in ok.stdout, ok.stderr[-2000:]
  bad = subprocess.run(cmd + ["--workers=0"], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
  assert bad.returncode == 2 and bad.stderr.strip() == "error: --workers=0: must be >= 1"
