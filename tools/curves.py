"""Learning-curve table of training runs: every eval/step_<N>.json as one long CSV.

  python tools/curves.py --run vqa=runs/density_cpu/points/vqa_s_2457600_seed0 \
      --run enriched=runs/density_cpu/points/enriched_s_2457600_seed0 --out docs/results/curves.csv

Columns: run, step, tokens (step x data.batch_size x data.seq_len from W/config.json) and every
numeric metric. `tools/report.py --curves=FILE.csv` turns it into the report's learning curves.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from mmscale import cli_flags  # noqa: E402
from mmscale.scaling import curves  # noqa: E402


def define_flags(fv: flags.FlagValues) -> None:
  """Flags on `fv`, a holder of this tool's own (mmscale/cli_flags.py)."""
  flags.DEFINE_multi_string("run", None, "NAME=WORKDIR (repeatable)", flag_values=fv)
  flags.DEFINE_string("out", None, "CSV path", flag_values=fv)
  flags.mark_flags_as_required(["run", "out"], flag_values=fv)


def main(argv: list[str]) -> int:
  """argv = [program, *flags] (module docstring)."""
  args, _ = cli_flags.parse(define_flags, argv, doc=__doc__)
  runs = [curves.parse_run(r) for r in args.run]
  names = [n for n, _ in runs]
  if len(set(names)) != len(names):
    cli_flags.usage_error(f"run names must be unique: {names}")
  rows = curves.collect(runs)
  path = curves.write_csv(rows, args.out)
  print(f"curves: {path} ({len(rows)} evaluations of {len(runs)} runs)")
  return 0


if __name__ == "__main__":
  cli_flags.run(main)
