"""Scaling report of a sweep, regenerated from its results table alone (docs/scaling.md).

  python tools/report.py --sweep_dir=runs/density_cpu --out=docs/results/knowledge_world.md
  python tools/report.py --results=docs/results/knowledge_world.csv --by=connector,res,image_tokens
  python tools/report.py --results=docs/results/density.csv --results=docs/results/mm1.csv \
      --by_group=mm1_connector=connector,res,image_tokens \
      --claims=configs/claims/knowledge_world.py --curves=docs/results/curves.csv \
      --preamble=docs/results/knowledge_world_preamble.md --out=docs/results/knowledge_world.md

`--results` may repeat (tables are concatenated; their `group` column keeps them apart); a
table of runs made outside a sweep comes from tools/results_table.py.
`--claims` adds `## Claims` with verdicts (mmscale/scaling/claims.py), `--curves` a table from
tools/curves.py adds `## Learning curves`, `--probe` (repeatable) a tools/probe.py result adds
`## Modality-balance probes`, `--preamble` is markdown put verbatim after the title (the setup
and exact commands), so the committed report regenerates from committed files alone.
`--sections` picks and orders the sections: claims, accuracy, fits, correlations (the parts of
each comparison group), curves, points, and evaluations (per row, the results table
`python -m mmscale.eval` prints) and probes. Writes the markdown at --out (default
DIR/report.md) and PNG figures in `<out stem>_plots/`.

  python tools/report.py --results=docs/results/default_run/runs.csv --by=name \
      --sections=evaluations,accuracy,points --out=docs/results/default_run.md

Tables, DIR, --out, --curves, --probe and --preamble may be local or in a bucket (`gs://...`).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from mmscale import cli_flags, paths  # noqa: E402
from mmscale.errors import UsageError  # noqa: E402
from mmscale.scaling import claims as claims_lib  # noqa: E402
from mmscale.scaling import curves as curves_lib  # noqa: E402
from mmscale.scaling.report import DEFAULT_SECTIONS, Report, load_all  # noqa: E402


EXTRA_SECTIONS = ("evaluations", "probes")


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
  flags.DEFINE_multi_string("probe", None, "a probe.json of tools/probe.py (repeatable)",
                            flag_values=fv)
  flags.DEFINE_list("sections", list(DEFAULT_SECTIONS), "sections in print order, of: "
                    + ", ".join(DEFAULT_SECTIONS + EXTRA_SECTIONS), flag_values=fv)


def evaluations_section(rows) -> list[str]:
  """Per row: its budget and losses, then the results table `python -m mmscale.eval` prints,
  rebuilt from the row's eval columns (evaluators the mixture teaches first, per `trained_for`)."""
  from mmscale.eval.runner import format_table  # pylint: disable=import-outside-toplevel
  lines = ["## Evaluation", "",
           "Per run, the results table `python -m mmscale.eval` prints, rebuilt from the row's "
           "evaluation columns (`mmscale.eval.runner.format_table`): the evaluators the run's "
           "mixture trains for first, then the others.", ""]
  for row in rows:
    taught = row.get("trained_for")
    taught = None if taught is None else set(str(taught).split(",")) - {""}
    first, final = row.get("first_loss"), row.get("final_loss")
    lines += [f"### Run: {row['name']}", "",
              f"{int(row['steps']):,} steps × {int(row['batch_size'])} rows × "
              f"{int(row['seq_len'])} positions = {int(row['tokens_trained']):,} training "
              f"positions" + (f", {row['flops']:.3g} FLOPs" if row.get("flops") else "")
              + (f"; training loss {first:.3f} at step 1, {final:.3f} at step "
                 f"{int(row['final_step']):,} (the last logged)" if first and final else "")
              + ".", "", "```", format_table(row, taught), "```", ""]
  return lines


def probes_section(probe_files) -> list[str]:
  """`## Modality-balance probes`: each probe.json's erasure and TCCD tables."""
  from mmscale.analysis import probe  # pylint: disable=import-outside-toplevel
  lines = ["## Modality-balance probes", "",
           "From `tools/probe.py`'s probe.json files (docs/analysis.md). Erasure: exact-match "
           "accuracy with no erasure and with the text or the image hidden states of the listed "
           "decoder blocks replaced by their nearest centroid; drop = no erasure − erased "
           "(positive = worse); ratio = text drop / image drop, shown only when the image drop "
           "exceeds twice the binomial standard error of the no-erasure accuracy, "
           "sqrt(p (1 − p) / n). TCCD: logits = (1 + a) · full − a · text-erased reference, "
           "tokens with p < b · max p cut; a = 0 is plain decoding.", ""]
  for path in probe_files:
    lines += probe.markdown_report(paths.read_json(path), source=path)
  return lines


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
  if "probes" in args.sections and not args.probe:
    raise ValueError("--sections=probes needs --probe=PROBE.json")
  extra = {}
  if "evaluations" in args.sections:
    extra["evaluations"] = evaluations_section(rows)
  if "probes" in args.sections:
    extra["probes"] = probes_section(args.probe)
  path = Report(rows, by=args.by.split(","), metric=args.metric, title=title,
                source=", ".join(f"`{s}`" for s in sources), failed=failed, pending=pending,
                claims=claims_lib.load(args.claims) if args.claims else (),
                claims_source=args.claims or "",
                curves=curves_lib.read_csv(args.curves) if args.curves else (),
                curves_source=args.curves or "", preamble=preamble,
                group_by=_group_by(args.by_group), sections=args.sections,
                extra=extra).write(out)
  print(f"report: {path}")
  return 0


if __name__ == "__main__":
  cli_flags.run(main)
