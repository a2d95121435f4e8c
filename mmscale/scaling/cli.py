"""`python -m mmscale.sweep --sweep=configs/sweeps/NAME.py[:arg] --sweep_dir=DIR
     --launcher=local|tpu|slurm [--dry_run] [--only=PATTERN] [--override=field=value ...]
     [--workers=N]`

Runs every point of a sweep (local), or runs/submits the exact launch commands for it (tpu,
slurm); `--dry_run` prints the commands instead. Rerunning the same command skips finished
points, retries failed ones and collects submitted ones; the results table is DIR/results.csv +
DIR/results.json. Exit status: 0 when every selected point is done, 1 when some failed, 2 when
some are still pending (submitted or, with --collect_only, missing). `--workers=N` (local only)
runs up to N points at once, each pinned to 1/N of this process's CPUs (Linux); the table and
exit status are as with one worker, and `--dry_run` prints the same commands. DIR may be local
or a bucket path (`gs://...`): the points' workdirs, markers, logs and the table go there.
docs/scaling.md has more.
"""

from __future__ import annotations

import logging
import os
import sys

from absl import flags

from mmscale import cli_flags, paths
from mmscale.scaling import spec as spec_lib
from mmscale.scaling.launchers import LAUNCHERS, LaunchOptions
from mmscale.scaling.sweep import Sweep, SweepOptions, select

REPO_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def define_flags(fv: flags.FlagValues) -> None:
  """The sweep's flags on `fv` (a holder of its own: see mmscale/cli_flags.py)."""
  flags.DEFINE_string("sweep", None, "configs/sweeps/NAME.py[:arg]", flag_values=fv)
  flags.DEFINE_string("sweep_dir", None, "directory of run dirs and results table", flag_values=fv)
  flags.DEFINE_enum("launcher", "local", sorted(LAUNCHERS), None, flag_values=fv)
  flags.DEFINE_boolean("dry_run", False, "print the commands, run nothing", flag_values=fv)
  flags.DEFINE_string("only", "", "point names: fnmatch pattern or substring", flag_values=fv)
  flags.DEFINE_multi_string("override", [], "field.path=value applied to every point "
                            "(e.g. data.world_dir=/w)", flag_values=fv)
  flags.DEFINE_integer("retries", 1, "extra attempts for a failing point", flag_values=fv)
  flags.DEFINE_boolean("collect_only", False,
                       "launch nothing; collect finished points into the table", flag_values=fv)
  flags.DEFINE_string("remote_sweep_dir", "", "DIR as the tpu/slurm workers see it", flag_values=fv)
  flags.DEFINE_integer("workers", 1, "local: points run at once, each pinned to 1/N of the CPUs "
                       "(default 1)", flag_values=fv)
  d = LaunchOptions()
  flags.DEFINE_string("python", d.python, "interpreter for the entry points (local default: "
                      "this one)", flag_values=fv)
  flags.DEFINE_string("train_module", d.train_module, None, flag_values=fv)
  flags.DEFINE_string("eval_module", d.eval_module, None, flag_values=fv)
  flags.DEFINE_string("repo_dir", d.repo_dir, "remote checkout (tpu, slurm)", flag_values=fv)
  flags.DEFINE_string("tpu_name", d.tpu_name, None, flag_values=fv)
  flags.DEFINE_string("tpu_zone", d.tpu_zone, None, flag_values=fv)
  flags.DEFINE_string("tpu_project", d.tpu_project, None, flag_values=fv)
  flags.DEFINE_integer("slurm_nodes", d.slurm_nodes, None, flag_values=fv)
  flags.DEFINE_integer("slurm_gpus_per_node", d.slurm_gpus_per_node, None, flag_values=fv)
  flags.DEFINE_string("slurm_partition", d.slurm_partition, None, flag_values=fv)
  flags.DEFINE_string("slurm_time", d.slurm_time, None, flag_values=fv)
  flags.DEFINE_multi_string("slurm_extra", [], "extra sbatch flag", flag_values=fv)
  flags.mark_flags_as_required(["sweep", "sweep_dir"], flag_values=fv)


def parse_flags(argv: list[str]) -> flags.FlagValues:
  """argv = [program, *flags], checked: --workers >= 1, and > 1 only with --launcher=local."""
  fv, _ = cli_flags.parse(define_flags, argv, doc=__doc__)
  if fv.workers < 1:
    cli_flags.usage_error(f"--workers={fv.workers}: must be >= 1")
  if fv.workers > 1 and fv.launcher != "local":
    cli_flags.usage_error(f"--workers={fv.workers} needs --launcher=local: it runs points at once "
                          f"on this machine's CPUs, and {fv.launcher} points run on other machines")
  return fv


def main(argv: list[str]) -> int:
  """argv = [program, *flags]; returns the exit status (module docstring)."""
  args = parse_flags(argv)
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
  python = args.python
  if args.launcher == "local" and python == LaunchOptions.python:
    python = sys.executable  # the same venv as the sweep process
  launch_opts = LaunchOptions(
      python=python, train_module=args.train_module, eval_module=args.eval_module,
      repo_dir=args.repo_dir, tpu_name=args.tpu_name, tpu_zone=args.tpu_zone,
      tpu_project=args.tpu_project, slurm_nodes=args.slurm_nodes,
      slurm_gpus_per_node=args.slurm_gpus_per_node, slurm_partition=args.slurm_partition,
      slurm_time=args.slurm_time, slurm_extra=tuple(args.slurm_extra))
  points = spec_lib.load_sweep(args.sweep, spec_lib.parse_overrides(args.override))
  points = select(points, args.only)
  opts = SweepOptions(sweep_dir=args.sweep_dir, launcher=args.launcher, dry_run=args.dry_run,
                      only=args.only, retries=args.retries, collect_only=args.collect_only,
                      remote_sweep_dir=args.remote_sweep_dir, workers=args.workers,
                      repo_dir=REPO_DIR)
  sweep = Sweep(points, opts, launch_opts)
  if args.dry_run:
    for point in points:
      spec_lib.check_point(point)  # a bad override fails now, not after a training run
    sweep.dry_run()
    return 0
  paths.makedirs(args.sweep_dir)
  by_status = sweep.run()
  for status, names in sorted(by_status.items()):
    print(f"{status}: {len(names)}  {' '.join(names)}")
  for failure in _failures(args.sweep_dir):
    print(f"\nFAILED {failure['name']} after {failure['attempts']} attempt(s): "
          f"{failure['error']}\n{failure['log_tail']}")
  print(f"results: {paths.join(args.sweep_dir, 'results.csv')}")
  if by_status.get("failed"):
    return 1
  return 2 if set(by_status) - {"done"} else 0


def _failures(sweep_dir: str) -> list[dict]:
  return paths.read_json(paths.join(sweep_dir, "results.json"))["failed"]
