"""Scaling report of a sweep, regenerated from its results table alone (docs/scaling.md).

  python tools/report.py --sweep_dir=runs/density_cpu --out=docs/results/knowledge_world.md
  python tools/report.py --results=docs/results/knowledge_world.csv --by=connector,res,image_tokens
  python tools/report.py --results=docs/results/density.csv --results=docs/results/mm1.csv \
      --by_group=mm1_connector=connector,res,image_tokens \
      --claims=configs/claims/knowledge_world.py --curves=docs/results/curves.csv \
      --preamble=docs/results/knowledge_world_preamble.md --out=docs/results/knowledge_world.md

`--results` may repeat (tables are concatenated; their `group` column keeps them apart).
`--claims` adds `## Claims` with verdicts (mmscale/scaling/claims.py), `--curves` a table from
tools/curves.py adds `## Learning curves`, `--preamble` is markdown put verbatim after the title
(the setup and exact commands), so the committed report regenerates from committed files alone.
Writes the markdown at --out (default DIR/report.md) and PNG figures in `<out stem>_plots/`.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mmscale.scaling import claims as claims_lib  # noqa: E402
from mmscale.scaling import curves as curves_lib  # noqa: E402
from mmscale.scaling.report import Report, load_all  # noqa: E402


def _group_by(items) -> dict:
  """['GROUP=col,col', ...] -> {GROUP: (col, col)}."""
  out = {}
  for item in items or ():
    group, sep, cols = item.partition("=")
    if not sep or not group or not cols:
      raise ValueError(f"--by_group '{item}': expected GROUP=col[,col...]")
    out[group] = tuple(cols.split(","))
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--sweep_dir", default=None, help="sweep directory with results.json/.csv")
  p.add_argument("--results", action="append", default=None,
                 help="a results.json or results.csv (overrides dir); repeat to concatenate")
  p.add_argument("--out", default=None, help="markdown path (default: DIR/report.md)")
  p.add_argument("--by", default="arm", help="comma-separated condition columns")
  p.add_argument("--by_group", action="append", default=None,
                 help="GROUP=col,col: condition columns for one comparison group (repeatable)")
  p.add_argument("--metric", default="vqa/accuracy/all", help="accuracy column; error = 1 - it")
  p.add_argument("--title", default=None)
  p.add_argument("--claims", default=None, help="configs/claims/NAME.py[:arg] with get_claims()")
  p.add_argument("--curves", default=None, help="learning-curve table from tools/curves.py")
  p.add_argument("--preamble", default=None, help="markdown file put verbatim after the title")
  args = p.parse_args(argv)
  sources = args.results or ([args.sweep_dir] if args.sweep_dir else [])
  if not sources:
    p.error("give --sweep_dir or --results")
  try:
    return _write(args, sources)
  except ValueError as e:  # a bad claim, table or flag: one line naming it, not a traceback
    p.error(str(e))
  return 2


def _write(args, sources) -> int:
  rows, failed, pending = load_all(sources)
  out = args.out or os.path.join(args.sweep_dir or os.path.dirname(sources[0]), "report.md")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  title = args.title or "Scaling report: " + " + ".join(
      os.path.basename(os.path.normpath(s)) for s in sources)
  preamble = ""
  if args.preamble:
    with open(args.preamble) as f:
      preamble = f.read()
  path = Report(rows, by=args.by.split(","), metric=args.metric, title=title,
                source=", ".join(f"`{s}`" for s in sources), failed=failed, pending=pending,
                claims=claims_lib.load(args.claims) if args.claims else (),
                claims_source=args.claims or "",
                curves=curves_lib.read_csv(args.curves) if args.curves else (),
                curves_source=args.curves or "", preamble=preamble,
                group_by=_group_by(args.by_group)).write(out)
  print(f"report: {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
