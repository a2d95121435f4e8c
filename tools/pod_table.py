"""The pod-scale table: configs compiled for TPU slices, one row each (docs/pod_scale.md).

  python tools/pod_table.py --row=configs/scaling/point.py:size=7b@v5p-256 \
      --row=configs/scaling/point.py:size=1b@v5e-64 --out=docs/pod_scale.md [--json_dir=DIR]
  python tools/pod_table.py --report=DIR/7b.json --report=... --out=docs/pod_scale.md

Each --row is CONFIG@TARGET, compiled in turn exactly as `python -m mmscale.compile` does;
--report renders saved `--out` JSON reports instead of compiling. The table (with the command)
replaces the one between the file's `<!-- pod-table:start/end -->` markers. Reports and
--json_dir may be local or `gs://...` paths.
"""
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from absl import flags  # noqa: E402

from mmscale import cli_flags, paths  # noqa: E402
from mmscale import config as config_lib  # noqa: E402
from mmscale.errors import MmscaleError  # noqa: E402


def define_flags(fv: flags.FlagValues) -> None:
  """Flags on `fv`, a holder of this tool's own (mmscale/cli_flags.py)."""
  flags.DEFINE_multi_string("row", [], "CONFIG@TARGET to compile (repeatable)", flag_values=fv)
  flags.DEFINE_multi_string("report", [], "saved JSON report to render (repeatable)",
                            flag_values=fv)
  flags.DEFINE_string("out", None, "markdown file to write the table into", flag_values=fv)
  flags.DEFINE_string("json_dir", "", "also save each compiled row's JSON report here",
                      flag_values=fv)
  flags.mark_flags_as_required(["out"], flag_values=fv)


def compile_row(spec: str) -> dict:
  from mmscale.compile.report import build_report  # pylint: disable=import-outside-toplevel
  from mmscale.compile.step import compile_train_step  # pylint: disable=import-outside-toplevel
  from mmscale.compile.targets import resolve_target  # pylint: disable=import-outside-toplevel
  config_spec, sep, target_name = spec.rpartition("@")
  if not sep:
    raise MmscaleError(f"--row '{spec}': expected CONFIG@TARGET, e.g. "
                       "configs/scaling/point.py:size=1b@v5e-64")
  target = resolve_target(target_name)
  result = compile_train_step(config_lib.load_config(config_spec), target.devices())
  return build_report(result, target, config_name=config_spec)


def main(argv: list[str]) -> int:
  """argv = [program, *flags] (module docstring)."""
  args, _ = cli_flags.parse(define_flags, argv, doc=__doc__)
  from mmscale.compile import table  # pylint: disable=import-outside-toplevel
  if not args.row and not args.report:
    cli_flags.usage_error("give at least one --row=CONFIG@TARGET or --report=FILE")
  reports = []
  try:
    for path in args.report:
      reports.append(paths.read_json(path))
    for spec in args.row:
      report = compile_row(spec)
      print(table.row(report), flush=True)
      reports.append(report)
      if args.json_dir:
        name = spec.replace("/", "_").replace(":", "_").replace("=", "-") + ".json"
        paths.write_json(paths.join(args.json_dir, name), report, indent=2)
  except (MmscaleError, OSError) as e:
    cli_flags.usage_error(str(e))
  command = "python tools/pod_table.py " + " ".join(
      shlex.quote(a) for a in argv[1:] if not a.startswith("--json_dir"))
  table.write_table(args.out, reports, command)
  print(f"table of {len(reports)} rows written to {args.out}")
  return 0


if __name__ == "__main__":
  cli_flags.run(main)
