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
Tables, DIR and --out may be local or in a bucket (`gs://...`, any etils.epath path).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from mmscale import cli_flags, paths  # noqa: E402
from mmscale.errors import UsageError  # noqa: E402
from mmscale.scaling import claims as claims_lib  # noqa: E402
from mmscale.scaling import curves as curves_lib  # noqa: E402
from mmscale.scaling.report import Report, load_all  # noqa: E402


def _group_by(items) -> dict:
  """['GROUP=col,col', ...] -> {GROUP: (col, col)}."""
  out = {}
  for item in items or ():
    group, sep, cols = item.partition("=")
    if not sep or not group or not cols:
      raise UsageError(f"--by_group '{item}': expected GROUP=col[,col...]")
    out[group] = tuple(cols.split(","))
  return out


def define_flags(fv: flags.FlagValues) -> None:
  """Flags on `fv`, a holder of this tool's own (mmscale/cli_flags.py)."""
  flags.DEFINE_string("sweep_dir", None, "sweep directory with results.json/.csv", flag_values=fv)
  flags.DEFINE_multi_string("results", None, "a results.json or results.csv (overrides dir); "
                            "repeat to concatenate", flag_values=fv)
  flags.DEFINE_string("out", None, "markdown path (default: DIR/report.md)", flag_values=fv)
  flags.DEFINE_string("by", "arm", "comma-separated condition columns", flag_values=fv)
  flags.DEFINE_multi_string("by_group", None, "GROUP=col,col: condition columns for one "
                            "comparison group (repeatable)", flag_values=fv)
  flags.DEFINE_string("metric", "vqa/accuracy/all", "accuracy column; error = 1 - it",
                      flag_values=fv)
  flags.DEFINE_string("title", None, None, flag_values=fv)
  flags.DEFINE_string("claims", None, "configs/claims/NAME.py[:arg] with get_claims()",
                      flag_values=fv)
  flags.DEFINE_string("curves", None, "learning-curve table from tools/curves.py", flag_values=fv)
  flags.DEFINE_string("preamble", None, "markdown file put verbatim after the title",
                      flag_values=fv)


def main(argv: list[str]) -> int:
  """argv = [program, *flags] (module docstring); a bad flag, table or claim is one `error: ...`
  line and exit status 2."""
  args, _ = cli_flags.parse(define_flags, argv, doc=__doc__)
  sources = args.results or ([args.sweep_dir] if args.sweep_dir else [])
  if not sources:
    cli_flags.usage_error("give --sweep_dir or --results")
  try:
    return _write(args, sources)
  except ValueError as e:  # a bad claim, table or flag: one line naming it, not a traceback
    cli_flags.usage_error(str(e))


def _write(args, sources) -> int:
  rows, failed, pending = load_all(sources)
  out = args.out or paths.join(args.sweep_dir or paths.parent(sources[0]), "report.md")
  title = args.title or "Scaling report: " + " + ".join(
      os.path.basename(os.path.normpath(s)) for s in sources)
  preamble = paths.read_text(args.preamble) if args.preamble else ""
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
  cli_flags.run(main)
