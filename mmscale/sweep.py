"""`python -m mmscale.sweep --sweep=configs/sweeps/NAME.py[:arg] --sweep_dir=DIR
     --launcher=local|tpu|slurm [--dry_run] [--only=PATTERN] [--override=field=value ...]
     [--workers=N]`

Runs every point of a sweep (local), or runs/submits the exact launch commands for it (tpu,
slurm); `--dry_run` prints the commands instead. Rerunning the same command skips finished
points, retries failed ones and collects submitted ones; the results table is DIR/results.csv +
DIR/results.json. Exit status: 0 when every selected point is done, 1 when some failed, 2 when
some are still pending (submitted or, with --collect_only, missing). `--workers=N` (local only)
runs up to N points at once, each pinned to 1/N of this process's CPUs (Linux); the table and
exit status are as with one worker, and `--dry_run` prints the same commands. docs/scaling.md
has more.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from mmscale.scaling import spec as spec_lib
from mmscale.scaling.launchers import LAUNCHERS, LaunchOptions
from mmscale.scaling.sweep import Sweep, SweepOptions, select


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m mmscale.sweep", description=__doc__.splitlines()[0])
  p.add_argument("--sweep", required=True, help="configs/sweeps/NAME.py[:arg]")
  p.add_argument("--sweep_dir", required=True, help="directory of run dirs and results table")
  p.add_argument("--launcher", default="local", choices=sorted(LAUNCHERS))
  p.add_argument("--dry_run", action="store_true", help="print the commands, run nothing")
  p.add_argument("--only", default="", help="point names: fnmatch pattern or substring")
  p.add_argument("--override", action="append", default=[],
                 help="field.path=value applied to every point (e.g. data.world_dir=/w)")
  p.add_argument("--retries", type=int, default=1, help="extra attempts for a failing point")
  p.add_argument("--collect_only", action="store_true",
                 help="launch nothing; collect finished points into the table")
  p.add_argument("--remote_sweep_dir", default="", help="DIR as the tpu/slurm workers see it")
  p.add_argument("--workers", type=int, default=1,
                 help="local: points run at once, each pinned to 1/N of the CPUs (default 1)")
  defaults = LaunchOptions()
  p.add_argument("--python", default=defaults.python,
                 help="interpreter for the entry points (local default: this one)")
  p.add_argument("--train_module", default=defaults.train_module)
  p.add_argument("--eval_module", default=defaults.eval_module)
  p.add_argument("--repo_dir", default=defaults.repo_dir, help="remote checkout (tpu, slurm)")
  p.add_argument("--tpu_name", default=defaults.tpu_name)
  p.add_argument("--tpu_zone", default=defaults.tpu_zone)
  p.add_argument("--tpu_project", default=defaults.tpu_project)
  p.add_argument("--slurm_nodes", type=int, default=defaults.slurm_nodes)
  p.add_argument("--slurm_gpus_per_node", type=int, default=defaults.slurm_gpus_per_node)
  p.add_argument("--slurm_partition", default=defaults.slurm_partition)
  p.add_argument("--slurm_time", default=defaults.slurm_time)
  p.add_argument("--slurm_extra", action="append", default=[], help="extra sbatch flag")
  return p


def parse_args(argv=None) -> argparse.Namespace:
  """The flags, checked: --workers >= 1, and > 1 only with --launcher=local."""
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.workers < 1:
    parser.error(f"--workers={args.workers}: must be >= 1")
  if args.workers > 1 and args.launcher != "local":
    parser.error(f"--workers={args.workers} needs --launcher=local: it runs points at once on "
                 f"this machine's CPUs, and {args.launcher} points run on other machines")
  return args


def main(argv=None) -> int:
  args = parse_args(argv)
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
                      repo_dir=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  sweep = Sweep(points, opts, launch_opts)
  if args.dry_run:
    sweep.dry_run()
    return 0
  os.makedirs(args.sweep_dir, exist_ok=True)
  by_status = sweep.run()
  for status, names in sorted(by_status.items()):
    print(f"{status}: {len(names)}  {' '.join(names)}")
  for failure in _failures(args.sweep_dir):
    print(f"\nFAILED {failure['name']} after {failure['attempts']} attempt(s): "
          f"{failure['error']}\n{failure['log_tail']}")
  print(f"results: {os.path.join(args.sweep_dir, 'results.csv')}")
  if by_status.get("failed"):
    return 1
  return 2 if set(by_status) - {"done"} else 0


def _failures(sweep_dir: str) -> list[dict]:
  with open(os.path.join(sweep_dir, "results.json")) as f:
    return json.load(f)["failed"]


if __name__ == "__main__":
  sys.exit(main())
