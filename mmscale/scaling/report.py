"""The markdown scaling report, from a results table alone (no run directories needed).

Conditions are the values of the `--by` columns (default `arm`) within a comparison `group`;
seeds are collapsed into mean ± std (and min-max) for every number shown, since a one-seed gap
at CPU scale is mostly noise (docs/results/knowledge_world_grid.md: pooled seed std 0.022).
Sections: per-comparison tables by question type; per-condition power-law fits of eval error vs
training FLOPs with t-based and bootstrap intervals of the exponent; Spearman correlation of the
score with semantic coverage and with task diversity across conditions (on seed means, and per
seed as mean ± std); the points table; failed and pending points.

Optional parts, each from a committed file so the report regenerates from the repository alone:
a hand-written preamble (setup and exact commands) right after the title; `## Claims` first, each
with its verdict (mmscale/scaling/claims.py); `## Learning curves` from the table of evaluations
made during training (mmscale/scaling/curves.py). `group_by` gives a comparison group its own
condition columns (the MM1 ablation varies connector/res/image_tokens, not the arm).
"""

from __future__ import annotations

import collections
import math
import os

from mmscale import paths
from mmscale.scaling import claims as claims_lib
from mmscale.scaling import curves as curves_lib
from mmscale.scaling import fit as fit_lib
from mmscale.scaling import plots

ACC_PREFIX = "vqa/accuracy/"
# Parts of each comparison group's section, in print order.
GROUP_PARTS = ("accuracy", "fits", "correlations")
# A scaling report's sections, in print order; `Report(sections=...)` picks and orders them, and
# names in `extra` (markdown made elsewhere, e.g. by tools/report.py) are placed where listed.
DEFAULT_SECTIONS = ("claims", *GROUP_PARTS, "curves", "points")


_num = claims_lib.number
_label = claims_lib.condition  # a column, or else the row's config argument of that name


def _fmt(x, spec=".3g") -> str:
  v = _num(x)
  return "-" if v is None else format(v, spec)


def _table(header: list, rows: list) -> list[str]:
  out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
  return out


def qtypes(rows) -> list[str]:
  keys = {k[len(ACC_PREFIX):] for r in rows for k in r if k.startswith(ACC_PREFIX)}
  return sorted(keys - {"all"}) + (["all"] if "all" in keys else [])


def _baseline_cell(rs) -> str:
  """The no-learning floor of the overall score, as the learning curves judge it
  (`curves.majority`: the form majority when reported, else the type majority); '-' if none."""
  values = [curves_lib.majority(r, "all") for r in rs]
  return str(fit_lib.summarize(values)) if any(v is not None for v in values) else "-"


class Report:
  """Builds the markdown and figures; `metric` is an accuracy (error = 1 - metric)."""

  def __init__(self, rows: list[dict], *, by=("arm",), metric: str = ACC_PREFIX + "all",
               title: str = "Scaling report", source: str = "", failed=(), pending=(),
               claims=(), claims_source: str = "", curves=(), curves_source: str = "",
               preamble: str = "", group_by=None, sections=DEFAULT_SECTIONS, extra=None):
    self.rows, self.by, self.metric = rows, tuple(by), metric
    self.title, self.source, self.failed, self.pending = title, source, failed, pending
    self.claims, self.claims_source = list(claims), claims_source
    self.curves, self.curves_source = list(curves), curves_source
    self.preamble = preamble
    self.group_by = {g: tuple(cols) for g, cols in (group_by or {}).items()}
    self.extra = dict(extra or {})
    known = set(DEFAULT_SECTIONS) | set(self.extra)
    unknown = [name for name in sections if name not in known]
    if unknown:
      raise ValueError(f"unknown report section(s) {unknown}: expected some of {sorted(known)}")
    self.sections = tuple(sections)

  def for_group(self, group: str) -> "Report":
    """This report with the group's own condition columns (`group_by`), else itself."""
    if group not in self.group_by:
      return self
    return Report(self.rows, by=self.group_by[group], metric=self.metric)

  def groups(self) -> dict:
    out = collections.defaultdict(list)
    for r in self.rows:
      out[str(r.get("group") or "all")].append(r)
    return dict(sorted(out.items()))

  def cells(self, rows) -> dict:
    """(condition, size, tokens) -> rows over seeds, in first-seen order."""
    out = {}
    for r in rows:
      out.setdefault((_label(r, self.by), str(r.get("size", "")), _fmt(r.get("tokens"), ".0f")),
                     []).append(r)
    return out

  def seed_table(self, rows, types) -> list[str]:
    header = [",".join(self.by), "size", "tokens", "seeds"] + [f"acc {t}" for t in types] + [
        "range (all)", "baseline (all)", "held-out loss", "train loss", "coverage", "formats"]
    body = []
    for (cond, size, tokens), rs in self.cells(rows).items():
      col = lambda k: fit_lib.summarize([_num(r.get(k)) for r in rs])  # noqa: E731
      acc_all = col(self.metric)
      body.append([cond, size, tokens, len(rs)] + [col(ACC_PREFIX + t) for t in types] + [
          f"{acc_all.low:.3f}-{acc_all.high:.3f}" if acc_all.n else "-",
          _baseline_cell(rs),
          col("heldout/loss"), col("final_loss"), col("coverage"), col("task_diversity")])
    return _table(header, body)

  def fits(self, rows) -> tuple[list[str], dict]:
    curves, body = {}, []
    by_cond = collections.defaultdict(list)
    for r in rows:
      c, acc = _num(r.get("flops")), _num(r.get(self.metric))
      if c and acc is not None and acc < 1:
        by_cond[_label(r, self.by)].append((c, 1 - acc))
    for cond, pts in sorted(by_cond.items()):
      comp, err = [p[0] for p in pts], [p[1] for p in pts]
      try:
        f = fit_lib.fit_power_law(comp, err)
        lo, hi = fit_lib.bootstrap_exponent(comp, err)
        boot = ("- (no resample spans 2 compute values)" if math.isnan(lo)
                else f"[{lo:.4f}, {hi:.4f}]")
        body.append([cond, f.n, len(set(comp)), f"{f.a:.3g}", f"{f.b:.4f}",
                     f"[{f.b_low:.4f}, {f.b_high:.4f}]", boot, f"{f.r2:.3f}"])
      except ValueError as e:
        f = None
        body.append([cond, len(pts), len(set(comp)), "-", "-", "-", "-", f"no fit: {e}"])
      curves[cond] = (comp, err, f)
    header = [",".join(self.by), "points", "compute values", "a", "b (err = a C^-b)",
              "95% CI (t)", "95% CI (bootstrap)", "R²"]
    return _table(header, body), curves

  def correlations(self, rows) -> tuple[list[str], dict]:
    """Spearman across conditions of the score vs coverage and vs task diversity."""
    per_cond = collections.defaultdict(list)
    for r in rows:
      per_cond[_label(r, self.by)].append(r)
    conds = sorted(per_cond)
    score = {c: fit_lib.summarize([_num(r.get(self.metric)) for r in per_cond[c]]) for c in conds}
    body, panels = [], {}
    for xname in ("coverage", "task_diversity"):
      xs = {c: fit_lib.summarize([_num(r.get(xname)) for r in per_cond[c]]).mean for c in conds}
      ok = [c for c in conds if not math.isnan(xs[c]) and score[c].n]
      rho = fit_lib.spearman([xs[c] for c in ok], [score[c].mean for c in ok])
      seeds = sorted({str(r.get("seed", "")) for r in rows})
      per_seed = []
      for s in seeds:
        pairs = [(xs[c], _num(r.get(self.metric))) for c in ok for r in per_cond[c]
                 if str(r.get("seed", "")) == s and _num(r.get(self.metric)) is not None]
        rs = fit_lib.spearman([p[0] for p in pairs], [p[1] for p in pairs])
        if not math.isnan(rs):
          per_seed.append(rs)
      body.append([xname, len(ok), "-" if math.isnan(rho) else f"{rho:.3f}",
                   fit_lib.summarize(per_seed) if per_seed else "-", len(per_seed)])
      if ok:
        panels[xname] = ([xs[c] for c in ok], [score[c].mean for c in ok],
                         [score[c].std for c in ok], ok, rho)
    header = [f"{self.metric} vs", "conditions", "Spearman rho (seed means)",
              "rho per seed (mean ± std)", "seeds"]
    return _table(header, body), panels

  def points_table(self) -> list[str]:
    header = ["name", "group", "seed", "steps", "tokens trained", "FLOPs", "train loss",
              self.metric, "held-out loss", "commit"]
    body = [[r.get("name"), r.get("group", ""), _fmt(r.get("seed"), ".0f"),
             _fmt(r.get("steps"), ".0f"), _fmt(r.get("tokens_trained"), ".0f"),
             _fmt(r.get("flops"), ".3g"), _fmt(r.get("final_loss"), ".4f"),
             _fmt(r.get(self.metric), ".3f"), _fmt(r.get("heldout/loss"), ".4f"),
             str(r.get("git_commit", ""))[:12]] for r in self.rows]
    return _table(header, body)

  def write(self, out_path: str) -> str:
    """Writes the markdown to out_path and its figures to `<stem>_plots/` beside it (local or
    `gs://...`)."""
    out_dir = paths.parent(out_path)
    stem = os.path.splitext(os.path.basename(out_path))[0]
    plot_dir = paths.join(out_dir, f"{stem}_plots")
    paths.makedirs(plot_dir)
    rel = lambda p: paths.relative(p, out_dir)  # noqa: E731
    types = qtypes(self.rows)
    outcomes = claims_lib.evaluate_all(self.claims, self.rows, self.by)  # fail before writing
    lines = [f"# {self.title}", ""]
    if self.preamble:
      lines += [self.preamble.rstrip("\n"), ""]
    lines += [f"Generated by `python tools/report.py` from {self.source or 'a results table'} "
              f"({len(self.rows)} points; commits: "
              f"{', '.join(sorted({str(r.get('git_commit', ''))[:12] for r in self.rows}))}). "
              f"Score: `{self.metric}`; error = 1 - score. Every cell over seeds is mean ± sample "
              "std (one seed: the value).", ""]
    parts = [p for p in GROUP_PARTS if p in self.sections]  # one block, where the first is
    for name in self.sections:
      if name == "claims" and outcomes:
        lines += claims_lib.section(outcomes, self.claims_source)
      elif parts and name == parts[0]:
        for group, rows in self.groups().items():
          lines += self.group_section(group, rows, types, plot_dir, rel, parts)
      elif name == "curves" and self.curves:
        lines += curves_lib.section(self.curves, plot_dir, out_dir, self.curves_source)
      elif name == "points":
        lines += ["## Points", ""] + self.points_table() + [""]
      elif name in self.extra:
        lines += list(self.extra[name])
    if self.failed or self.pending:
      lines += ["## Not finished", ""]
      lines += [f"- failed: `{f['name']}` after {f.get('attempts')} attempt(s): {f.get('error')}"
                for f in self.failed]
      lines += [f"- {p['status']}: `{p['name']}`" for p in self.pending]
      lines += [""]
    paths.write_text(out_path, "\n".join(lines))
    if not paths.is_remote(plot_dir) and not os.listdir(plot_dir):  # no section drew a figure
      os.rmdir(plot_dir)
    return out_path

  def group_section(self, group, rows, types, plot_dir, rel, parts=GROUP_PARTS) -> list[str]:
    """One comparison group: those of accuracy by type, scaling fits and density-vs-format
    correlations that `parts` names."""
    view = self.for_group(group)
    lines = [f"## Comparison: {group}", ""]
    if "accuracy" in parts:
      lines += view.accuracy_part(group, rows, types, plot_dir, rel)
    if "fits" in parts:
      lines += view.fits_part(group, rows, plot_dir, rel)
    if "correlations" in parts:
      lines += view.correlations_part(group, rows, plot_dir, rel)
    return lines

  def accuracy_part(self, group, rows, types, plot_dir, rel) -> list[str]:
    lines = ["### Accuracy by question type (seeds collapsed)", ""] + self.seed_table(
        rows, types) + [""]
    if types:
      cells = self.cells(rows)
      series = {}
      for t in types:
        sums = [fit_lib.summarize([_num(r.get(ACC_PREFIX + t)) for r in rs])
                for rs in cells.values()]
        series[t] = ([s.mean for s in sums], [s.std for s in sums])
      png = plots.bars([" ".join(k) for k in cells], series,
                       paths.join(plot_dir, f"{group}_accuracy.png"), "accuracy")
      lines += [f"![accuracy by question type]({rel(png)})", ""]
    return lines

  def fits_part(self, group, rows, plot_dir, rel) -> list[str]:
    table, curves = self.fits(rows)
    lines = ["### Scaling fits: error vs training FLOPs", ""] + table + [""]
    if any(len(set(c)) >= 2 for c, _, _ in curves.values()):
      png = plots.scaling(curves, paths.join(plot_dir, f"{group}_scaling.png"),
                          f"1 - {self.metric}")
      lines += [f"![scaling]({rel(png)})", ""]
    return lines

  def correlations_part(self, group, rows, plot_dir, rel) -> list[str]:
    table, panels = self.correlations(rows)
    lines = ["### Knowledge density vs task format", "",
              "Spearman correlation across conditions of the score with the semantic coverage "
              "of the eval inventory and with the number of task formats (density report).",
              ""] + table + [""]
    if panels:
      png = plots.correlation(panels, paths.join(plot_dir, f"{group}_correlation.png"),
                              self.metric)
      lines += [f"![correlation]({rel(png)})", ""]
    return lines


def load(path: str) -> tuple[list, list, list]:
  """(rows, failed, pending) from a sweep dir, results.json or results.csv."""
  from mmscale.scaling.results import read_table  # pylint: disable=import-outside-toplevel
  json_path = paths.join(path, "results.json") if paths.is_dir(path) else path
  if json_path.endswith(".json") and paths.exists(json_path):
    data = paths.read_json(json_path)
    if isinstance(data, dict):
      return data["rows"], data.get("failed", []), data.get("pending", [])
  return read_table(path), [], []


def load_all(paths) -> tuple[list, list, list]:
  """Several tables as one (e.g. the density sweep and the MM1 ablation); their `group` column
  keeps the comparisons apart."""
  rows, failed, pending = [], [], []
  for path in paths:
    r, f, p = load(path)
    rows, failed, pending = rows + list(r), failed + list(f), pending + list(p)
  return rows, failed, pending
