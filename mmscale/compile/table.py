"""Compile reports as one markdown table (preset x target), written into a file between markers.

docs/pod_scale.md holds the table between `<!-- pod-table:start -->` and `<!-- pod-table:end -->`;
`tools/pod_table.py` regenerates it from compiles (or saved JSON reports) and leaves the rest of
the file alone.
"""

from __future__ import annotations

from etils import epath

START, END = "<!-- pod-table:start -->", "<!-- pod-table:end -->"
GIB = float(1 << 30)

HEADER = ("| config | target | mesh (data, fsdp, tensor) | accum | attention | params "
          "| memory / chip | HBM "
          "| fits (headroom) | FLOPs / step | step s @40% / 55% MFU | tokens/day @40% / 55% "
          "| collectives / step / chip |")
RULE = "|" + "|".join(["---"] * 13) + "|"


def _short_config(name: str) -> str:
  return name.replace("configs/scaling/point.py:", "point:")


def row(report: dict) -> str:
  """One table row of a `build_report` dict."""
  m, mesh = report["memory"], report["mesh"]
  total = m.get("total")
  fits = (f"yes ({report['headroom']:.0%})" if report["fits"] else
          f"NO ({report['headroom']:.0%})" if report["headroom"] is not None else "NO")
  p40, p55 = report["projections"]
  collective = sum(v["bytes"] for v in report["collectives"].values())
  kernels = sum(report.get("kernel_calls", {}).values())
  attention = report.get("attention", "xla") + (f" ({kernels} kernels)" if kernels else "")
  return (f"| `{_short_config(report['config'])}` | {report['target']}"
          f"{'' if report['num_slices'] == 1 else ' x' + str(report['num_slices'])} "
          f"| {mesh['data']}, {mesh['fsdp']}, {mesh['tensor']} | {report['grad_accum_steps']} "
          f"| {attention} | {report['params'] / 1e9:.2f}B "
          f"| {'?' if total is None else f'{total / GIB:.2f} GiB'} "
          f"| {report['hbm_bytes'] / GIB:.2f} GiB | {fits} | {report['flops_per_step']:.3g} "
          f"| {p40['step_seconds']:.3g} / {p55['step_seconds']:.3g} "
          f"| {p40['tokens_per_day']:.3g} / {p55['tokens_per_day']:.3g} "
          f"| {collective / GIB:.2f} GiB |")


def table(reports: list[dict]) -> str:
  return "\n".join([HEADER, RULE] + [row(r) for r in reports])


def write_table(path: str, reports: list[dict], command: str) -> None:
  """Writes the table (and the command that made it) between the markers of `path`, or as the
  whole file when it has no markers."""
  block = f"{START}\n```bash\n{command}\n```\n\n{table(reports)}\n{END}"
  p = epath.Path(path)
  text = p.read_text() if p.exists() else ""
  if START in text and END in text:
    text = text[:text.index(START)] + block + text[text.index(END) + len(END):]
  else:
    text = block + "\n"
  p.write_text(text)
