"""Learning-curve table of training runs: every eval/step_<N>.json as one long CSV.

  python tools/curves.py --run vqa=runs/density_cpu/points/vqa_s_2457600_seed0 \
      --run enriched=runs/density_cpu/points/enriched_s_2457600_seed0 --out docs/results/curves.csv

Columns: run, step, tokens (step x data.batch_size x data.seq_len from W/config.json) and every
numeric metric. `tools/report.py --curves=FILE.csv` turns it into the report's learning curves.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mmscale.scaling import curves  # noqa: E402


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--run", action="append", required=True, help="NAME=WORKDIR (repeatable)")
  p.add_argument("--out", required=True, help="CSV path")
  args = p.parse_args(argv)
  runs = [curves.parse_run(r) for r in args.run]
  names = [n for n, _ in runs]
  if len(set(names)) != len(names):
    p.error(f"run names must be unique: {names}")
  rows = curves.collect(runs)
  path = curves.write_csv(rows, args.out)
  print(f"curves: {path} ({len(rows)} evaluations of {len(runs)} runs)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
