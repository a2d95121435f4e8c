"""Scaling report of a sweep, regenerated from its results table alone (docs/scaling.md).

  python tools/report.py --sweep_dir=runs/density_cpu --out=docs/results/knowledge_world.md
  python tools/report.py --results=docs/results/knowledge_world.csv --by=connector,res,image_tokens

Writes the markdown at --out (default DIR/report.md) and PNG figures in `<out stem>_plots/`.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mmscale.scaling.report import Report, load  # noqa: E402


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--sweep_dir", default=None, help="sweep directory with results.json/.csv")
  p.add_argument("--results", default=None, help="a results.json or results.csv (overrides dir)")
  p.add_argument("--out", default=None, help="markdown path (default: DIR/report.md)")
  p.add_argument("--by", default="arm", help="comma-separated condition columns")
  p.add_argument("--metric", default="vqa/accuracy/all", help="accuracy column; error = 1 - it")
  p.add_argument("--title", default=None)
  args = p.parse_args(argv)
  source = args.results or args.sweep_dir
  if not source:
    p.error("give --sweep_dir or --results")
  rows, failed, pending = load(source)
  out = args.out or os.path.join(args.sweep_dir or os.path.dirname(source), "report.md")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  title = args.title or f"Scaling report: {os.path.basename(os.path.normpath(source))}"
  path = Report(rows, by=args.by.split(","), metric=args.metric, title=title,
                source=f"`{source}`", failed=failed, pending=pending).write(out)
  print(f"report: {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
