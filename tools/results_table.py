"""Results table of training runs made outside a sweep: one row per run, in the sweep table's format.

  python tools/results_table.py --run=default=runs/tiny --run=steps1500=runs/t1500 \
      --group=default_run --out=docs/results/default_run/runs.csv

Run from the repository the runs were made in: each row records its git commit, and the
evaluators the run's mixture teaches (`trained_for`) are read from the mixture's record
directories (W/config.json's data.world_dir, relative to here). Rows hold the budget, first and
final training loss, FLOPs and every metric of W/eval/results.json (`mmscale/scaling/results.py:
run_row`); `tools/report.py --results=FILE.csv` reports them, so a committed report regenerates
from the committed table alone. Workdirs and --out may be local or in a bucket (`gs://...`).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ml_collections  # noqa: E402
from absl import flags  # noqa: E402

from mmscale import cli_flags, paths  # noqa: E402
from mmscale.errors import MmscaleError  # noqa: E402
from mmscale.eval import taught  # noqa: E402
from mmscale.scaling import curves, results  # noqa: E402


def define_flags(fv: flags.FlagValues) -> None:
  """Flags on `fv`, a holder of this tool's own (mmscale/cli_flags.py)."""
  flags.DEFINE_multi_string("run", None, "NAME=WORKDIR (repeatable)", flag_values=fv)
  flags.DEFINE_string("group", "runs", "the rows' comparison group", flag_values=fv)
  flags.DEFINE_string("out", None, "CSV path", flag_values=fv)
  flags.mark_flags_as_required(["run", "out"], flag_values=fv)


def trained_for(workdir: str) -> set[str] | None:
  """The evaluators the run's mixture teaches; None when its record directories are not here."""
  data = ml_collections.ConfigDict(paths.read_json(paths.join(workdir, "config.json"))["data"])
  return taught.taught_evaluators(data)


def main(argv: list[str]) -> int:
  """argv = [program, *flags] (module docstring); a bad run is one `error: ...` line, exit 2."""
  args, _ = cli_flags.parse(define_flags, argv, doc=__doc__)
  try:
    runs = [curves.parse_run(r) for r in args.run]
    names = [n for n, _ in runs]
    if len(set(names)) != len(names):
      cli_flags.usage_error(f"run names must be unique: {names}")
    commit = results.git_commit(".")
    rows = []
    for name, workdir in runs:
      row = results.run_row(name, workdir, group=args.group, commit=commit)
      taught_here = trained_for(workdir)
      if taught_here is not None:
        row["trained_for"] = ",".join(sorted(taught_here))
      rows.append(row)
  except MmscaleError as e:
    cli_flags.usage_error(str(e))
  path = results.write_csv(rows, args.out)
  print(f"results: {path} ({len(rows)} runs at commit {commit[:12]})")
  return 0


if __name__ == "__main__":
  cli_flags.run(main)
