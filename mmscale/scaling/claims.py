"""Claims with verdicts: the report states what the tables support, by a rule per kind.

A claims file `configs/claims/NAME.py` defines `get_claims(arg=None) -> list[dict]` (loaded like
every config of the repo, `mmscale.config.call_config_file`). Each claim has a `name`, a `kind`
(a key of KINDS) and that kind's fields. Conditions are the report's `--by` labels (default the
arm). Any claim may narrow its rows with `group` (one comparison group), `exclude_groups` (a list)
and `where` ({column: value}, e.g. one token budget).

Why intervals and not the means alone: at CPU scale a one-seed gap is mostly noise (the pooled
seed std of the density sweep is 0.022 accuracy, docs/results/knowledge_world_grid.md, as large as many
gaps between arms), so a difference claim is decided by a Welch t
interval over seeds (unequal variances: arms differ in how stable they train; scipy.stats'
ttest_ind), and a claim made with one seed on a side, or with every seed giving the same value on
both sides (no noise estimate: the interval would have zero width), gets no verdict at all. The rules, per kind:

  greater      a > b on `metric`: held if the 95% CI of mean(a) - mean(b) is above 0, did not
               hold if it is below 0, else not shown (within seed noise).
  at_most      a - b <= margin: held if the 95% CI's upper end is <= margin, did not hold if its
               lower end is > margin, else inconclusive.
  equivalent   |a - b| <= margin (TOST at 5%): held if the 90% CI lies inside [-margin, margin],
               did not hold if it lies entirely outside, else inconclusive.
  correlation  Spearman rho of `metric` across conditions against `x` (default coverage) beats
               rho against `versus` (default task_diversity): held if rho_x > rho_versus on seed
               means and in a majority of seeds and rho_x > 0; did not hold if rho_x <=
               rho_versus on seed means; else inconclusive.
  factor_effects  the marginal mean of `metric` per level of each factor; held if the largest
               range (max - min over levels) among `factors` exceeds the largest among `versus`.
               With `noise_from` (a row selection like a claim's: group / exclude_groups /
               where), a one-seed grid is judged against seed noise measured elsewhere: the
               pooled within-condition std s of the selected rows' conditions with >= 2 seeds.
               A range counts only if it exceeds twice its standard error,
               2 s sqrt(1/n_max + 1/n_min) (the two extreme levels' point counts); held if a
               counting factor range beats every `versus` range, did not hold if a counting
               `versus` range beats every factor range, else not shown (within seed noise).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import warnings

import numpy as np
from scipy import stats

from mmscale import config as config_lib
from mmscale.errors import UnknownNameError
from mmscale.registry import Registry
from mmscale.scaling import fit as fit_lib
from mmscale.scaling import spec as spec_lib

HELD = "held"
NOT_HELD = "did not hold"
NOT_SHOWN = "not shown (within seed noise)"
INCONCLUSIVE = "inconclusive"
ONE_SEED = "one seed: no verdict"
NO_VARIANCE = "no seed variance: no verdict"

RULES = {
    "greater": "held if the 95% Welch t interval of mean(a) − mean(b) over seeds lies above 0; "
               "did not hold if it lies below 0; otherwise not shown (within seed noise).",
    "at_most": "held if the upper end of the 95% Welch t interval of a − b is ≤ margin; did not "
               "hold if its lower end is > margin; otherwise inconclusive.",
    "equivalent": "two one-sided tests at 5%: held if the 90% Welch t interval of a − b lies "
                  "inside [−margin, margin]; did not hold if it lies entirely outside; otherwise "
                  "inconclusive.",
    "correlation": "held if Spearman rho of the metric with x exceeds rho with `versus` across "
                   "conditions (on seed means) and in a majority of seeds, and rho with x > 0; did "
                   "not hold if rho with x ≤ rho with `versus` on seed means; otherwise "
                   "inconclusive.",
    "factor_effects": "marginal mean of the metric per level of each factor (over all rows at "
                      "that level); held if the largest range (max − min of the marginal means) "
                      "among the factors exceeds the largest among `versus`. With a seed-noise "
                      "estimate s (pooled within-condition std of replicated conditions), a "
                      "range counts only above 2 s sqrt(1/n_max + 1/n_min); held if a counting "
                      "factor range beats every `versus` range, did not hold if a counting "
                      "`versus` range beats every factor range, else not shown (within seed "
                      "noise).",
}
ONE_SEED_RULE = ("A difference with one seed on either side gets no verdict (its diff is shown): "
                 "one seed cannot separate an effect from seed noise.")
NO_VARIANCE_RULE = ("Nor does one whose seeds all gave the same value on both sides: with no "
                    "spread there is no estimate of the noise, and a zero-width interval would "
                    "claim certainty the data do not give.")


class ClaimError(ValueError):
  """A claim that cannot be evaluated: names the claim and the field at fault."""

  def __init__(self, claim, field: str, message: str):
    name = claim.get("name", "?") if isinstance(claim, dict) else "?"
    super().__init__(f"claim '{name}': field '{field}': {message}")


@dataclasses.dataclass
class Outcome:
  """One evaluated claim: its verdict, a one-line statement and its markdown table(s)."""
  name: str
  kind: str
  verdict: str
  statement: str
  lines: list


# --- row access (shared with the report, so labels and factors read rows the same way) ---------

def number(x):
  """A finite float from a cell (CSV text, JSON number), or None."""
  if x is None or x == "" or isinstance(x, bool):
    return None
  try:
    v = float(x)
  except (TypeError, ValueError):
    return None
  return None if math.isnan(v) else v


def level_text(value) -> str:
  """A coordinate as text: 96.0 (read back from CSV) and 96 (from a config argument) agree."""
  if value is None:
    return ""
  v = number(value)
  return str(int(v)) if v is not None and v.is_integer() else str(value)


def coordinate(row: dict, column: str):
  """The row's value of `column`, or else the `column=` argument of its `config` spec
  (`path.py:k=v,...`): a table from an older sweep may lack a column its configs name."""
  value = row.get(column)
  if value is not None and value != "" and not (isinstance(value, float) and math.isnan(value)):
    return value
  return spec_lib.config_arg_tags(str(row.get("config") or "")).get(column)


def condition(row: dict, by) -> str:
  """The condition label of a row: its `by` coordinates joined by commas."""
  return ",".join(level_text(coordinate(row, col)) for col in by)


def factor_value(row: dict, factor: str) -> str:
  """A factor level from the row's column or its config argument; a clear error if neither."""
  value = coordinate(row, factor)
  if value is None:
    raise ValueError(f"factor '{factor}': row '{row.get('name', '?')}' has no column '{factor}' "
                     f"and its config '{row.get('config', '')}' has no {factor}=... argument")
  return level_text(value)


# --- statistics ---------------------------------------------------------------------------------

def welch_interval(a, b, confidence: float) -> tuple[float, float, float]:
  """(mean(a) - mean(b), low, high): Welch's t interval (Welch-Satterthwaite dof), from
  `scipy.stats.ttest_ind(equal_var=False)`. (diff, nan, nan) when both sides are constant: with
  no spread over seeds there is no estimate of the noise, so no interval (not a zero-width one)."""
  a, b = np.asarray(a, float), np.asarray(b, float)
  diff = float(a.mean() - b.mean())
  if np.ptp(a) == 0 and np.ptp(b) == 0:
    return diff, float("nan"), float("nan")
  with warnings.catch_warnings():  # one constant side: scipy warns of precision loss, harmlessly
    warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)
  return diff, float(ci.low), float(ci.high)


def _greater_rule(low, high, margin):
  del margin
  return HELD if low > 0 else NOT_HELD if high < 0 else NOT_SHOWN


def _at_most_rule(low, high, margin):
  return HELD if high <= margin else NOT_HELD if low > margin else INCONCLUSIVE


def _equivalent_rule(low, high, margin):
  if -margin <= low and high <= margin:
    return HELD
  return NOT_HELD if high < -margin or low > margin else INCONCLUSIVE


# --- the registry -------------------------------------------------------------------------------

KINDS = Registry("claim kind")


def _kind(name: str, *required: str):
  """Registers an evaluator `fn(claim, rows, by, all_rows) -> Outcome` in KINDS with the fields
  it requires; `rows` are the claim's selection, `all_rows` the whole table (for estimates made on
  other rows, like factor_effects' seed noise)."""
  def register(fn):
    fn.required = ("metric",) + required
    return KINDS.add(name, fn)
  return register


def _table(header, rows) -> list[str]:
  """Markdown table; a `|` inside a cell (|a − b|) is escaped so it does not split the cell."""
  out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  return out + ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]


def _by_condition(rows, by) -> dict:
  out = collections.defaultdict(list)
  for r in rows:
    out[condition(r, by)].append(r)
  return out


def _values(claim, rows, by, field) -> list[float]:
  """Per-row (per seed) values of the metric for condition claim[field]."""
  cond = str(claim[field])
  per = _by_condition(rows, by)
  if cond not in per:
    raise ClaimError(claim, field, f"no rows with {','.join(by)} = '{cond}' among the claim's "
                     f"rows (conditions: {sorted(per)})")
  vals = [v for v in (number(r.get(claim["metric"])) for r in per[cond]) if v is not None]
  if not vals:
    raise ClaimError(claim, "metric", f"'{claim['metric']}' has no value for condition '{cond}'")
  return vals


def _summary_cell(label, values) -> str:
  s = fit_lib.summarize(values)
  return f"{label}: {s} (n={s.n})"


def _difference(claim, rows, by, *, confidence, rule, comparison) -> Outcome:
  a, b = _values(claim, rows, by, "a"), _values(claim, rows, by, "b")
  margin = float(claim.get("margin", 0.0))
  if min(len(a), len(b)) < 2:
    diff = float(np.mean(a) - np.mean(b))
    verdict, diff_cell = ONE_SEED, f"{diff:+.3f} (no interval: one seed)"
  else:
    diff, low, high = welch_interval(a, b, confidence)
    if math.isnan(low):
      verdict, diff_cell = NO_VARIANCE, f"{diff:+.3f} (no interval: every seed gave the same value)"
    else:
      verdict = rule(low, high, margin)
      diff_cell = f"{diff:+.3f}, {confidence:.0%} CI [{low:+.3f}, {high:+.3f}]"
  values = f"{_summary_cell(claim['a'], a)}; {_summary_cell(claim['b'], b)}"
  lines = _table(["claim", "comparison", "metric", "values (mean ± std over seeds)",
                  "diff (a − b) and CI", "verdict"],
                 [[claim["name"], comparison, f"`{claim['metric']}`", values, diff_cell,
                   f"**{verdict}**"]])
  return Outcome(claim["name"], claim["kind"], verdict, f"{comparison} on `{claim['metric']}`",
                 lines)


@_kind("greater", "a", "b")
def greater(claim, rows, by, all_rows=None) -> Outcome:
  del all_rows
  return _difference(claim, rows, by, confidence=0.95, rule=_greater_rule,
                     comparison=f"{claim['a']} > {claim['b']}")


@_kind("at_most", "a", "b", "margin")
def at_most(claim, rows, by, all_rows=None) -> Outcome:
  del all_rows
  return _difference(claim, rows, by, confidence=0.95, rule=_at_most_rule,
                     comparison=f"{claim['a']} − {claim['b']} ≤ {claim['margin']}")


@_kind("equivalent", "a", "b", "margin")
def equivalent(claim, rows, by, all_rows=None) -> Outcome:
  del all_rows
  return _difference(claim, rows, by, confidence=0.90, rule=_equivalent_rule,
                     comparison=f"|{claim['a']} − {claim['b']}| ≤ {claim['margin']}")


def _rhos(per_cond, conds, xcol, metric, seed=None) -> float:
  """Spearman across conditions of metric (seed mean, or one seed's value) vs the condition's x."""
  xs, ys = [], []
  for c in conds:
    x = fit_lib.summarize([number(r.get(xcol)) for r in per_cond[c]]).mean
    rs = [r for r in per_cond[c] if seed is None or level_text(r.get("seed", "")) == seed]
    y = fit_lib.summarize([number(r.get(metric)) for r in rs])
    if y.n and not math.isnan(x):
      xs.append(x)
      ys.append(y.mean)
  return fit_lib.spearman(xs, ys)


def _rho_text(rho) -> str:
  return "undefined" if math.isnan(rho) else f"{rho:.3f}"


@_kind("correlation")
def correlation(claim, rows, by, all_rows=None) -> Outcome:
  del all_rows
  metric, x, versus = claim["metric"], claim.get("x", "coverage"), claim.get(
      "versus", "task_diversity")
  for field, col in (("x", x), ("versus", versus)):
    if not any(number(r.get(col)) is not None for r in rows):
      raise ClaimError(claim, field, f"no row has a value in column '{col}'")
  per_cond = _by_condition(rows, by)
  conds = [c for c in sorted(per_cond) if any(number(r.get(metric)) is not None
                                               for r in per_cond[c])]
  rho_x, rho_v = _rhos(per_cond, conds, x, metric), _rhos(per_cond, conds, versus, metric)
  seeds = sorted({level_text(r.get("seed", "")) for r in rows})
  per_seed = [(_rhos(per_cond, conds, x, metric, s), _rhos(per_cond, conds, versus, metric, s))
              for s in seeds]
  per_seed = [(rx, rv) for rx, rv in per_seed if not (math.isnan(rx) or math.isnan(rv))]
  wins = sum(rx > rv for rx, rv in per_seed)
  if math.isnan(rho_x) or math.isnan(rho_v):
    verdict = INCONCLUSIVE
  elif rho_x <= rho_v:
    verdict = NOT_HELD
  elif wins * 2 > len(per_seed) and rho_x > 0:
    verdict = HELD
  else:
    verdict = INCONCLUSIVE
  seed_cell = "-"
  if per_seed:
    seed_cell = (f"per seed: {fit_lib.summarize([p[0] for p in per_seed])} vs "
                 f"{fit_lib.summarize([p[1] for p in per_seed])}; {x} ahead in "
                 f"{wins}/{len(per_seed)} seeds")
  values = (f"rho({x}) = {_rho_text(rho_x)}, rho({versus}) = {_rho_text(rho_v)} on seed means "
            f"over {len(conds)} conditions; {seed_cell}")
  diff = "-" if math.isnan(rho_x - rho_v) else f"rho({x}) − rho({versus}) = {rho_x - rho_v:+.3f}"
  comparison = f"rho({metric}, {x}) > rho({metric}, {versus})"
  lines = _table(["claim", "comparison", "metric", "values", "diff", "verdict"],
                 [[claim["name"], comparison, f"`{metric}`", values, diff, f"**{verdict}**"]])
  if len(conds) < 4:
    lines += ["", f"Note: only {len(conds)} conditions; Spearman over fewer than 4 points takes "
              "few values and is easily ±1 by chance."]
  return Outcome(claim["name"], claim["kind"], verdict, f"{comparison} across conditions", lines)


def _as_list(claim, field) -> list[str]:
  value = claim[field]
  value = [value] if isinstance(value, str) else list(value)
  if not value:
    raise ClaimError(claim, field, "expected a non-empty list of factor names")
  return [str(v) for v in value]


def _sort_levels(levels):
  nums = [number(v) for v in levels]
  if all(n is not None for n in nums):
    return [v for _, v in sorted(zip(nums, levels))]
  return sorted(levels)


def marginal_means(claim, rows, factor) -> dict:
  """level -> Summary of the metric over every row at that level of `factor`."""
  per = collections.defaultdict(list)
  for r in rows:
    v = number(r.get(claim["metric"]))
    if v is None:
      continue
    try:
      per[factor_value(r, factor)].append(v)
    except ValueError as e:
      raise ClaimError(claim, "factors" if factor in _as_list(claim, "factors") else "versus",
                       str(e)) from e
  return {level: fit_lib.summarize(per[level]) for level in _sort_levels(list(per))}


def pooled_seed_std(claim, rows, by) -> tuple[float, int]:
  """(s, conditions): the pooled within-condition sample std of the metric over the conditions
  of `rows` with >= 2 seeds (sum of squared deviations / sum of (n - 1)); (nan, 0) if none."""
  ss, dof, conds = 0.0, 0, 0
  for rs in _by_condition(rows, by).values():
    vals = [v for v in (number(r.get(claim["metric"])) for r in rs) if v is not None]
    if len(vals) >= 2:
      ss += float(np.sum((np.asarray(vals) - np.mean(vals)) ** 2))
      dof += len(vals) - 1
      conds += 1
  return (math.sqrt(ss / dof), conds) if dof else (float("nan"), 0)


def _range_noise(summaries, s: float) -> float:
  """Twice the standard error of (max - min) of level means: 2 s sqrt(1/n_max + 1/n_min)."""
  by_mean = sorted(summaries, key=lambda x: x.mean)
  return 2 * s * math.sqrt(1 / by_mean[-1].n + 1 / by_mean[0].n)


def _factor_verdict(ranges, noise, factors, versus) -> str:
  top, top_versus = max(ranges[f] for f in factors), max(ranges[f] for f in versus)
  if noise is None:
    return HELD if top > top_versus else NOT_HELD
  counts = {f: ranges[f] > noise[f] for f in ranges}
  if any(counts[f] and ranges[f] > top_versus for f in factors):
    return HELD
  if any(counts[f] and ranges[f] >= top for f in versus):
    return NOT_HELD
  return NOT_SHOWN


@_kind("factor_effects", "factors", "versus")
def factor_effects(claim, rows, by, all_rows=None) -> Outcome:
  factors, versus = _as_list(claim, "factors"), _as_list(claim, "versus")
  if not any(number(r.get(claim["metric"])) is not None for r in rows):
    raise ClaimError(claim, "metric", f"'{claim['metric']}' has no value in the claim's rows")
  means = {f: marginal_means(claim, rows, f) for f in factors + versus}
  ranges = {f: (max(s.mean for s in m.values()) - min(s.mean for s in m.values())) for f, m in
            means.items()}
  noise, noise_text = None, ""
  if claim.get("noise_from"):
    # by: the report's conditions (arms) of the replicated rows the noise is measured on
    sel = dict(claim["noise_from"], metric=claim["metric"], name=claim["name"])
    s, conds = pooled_seed_std(claim, select_rows(sel, all_rows or rows), by)
    if not conds:
      raise ClaimError(claim, "noise_from", "no condition with >= 2 seeds in the selected rows")
    noise = {f: _range_noise(list(m.values()), s) for f, m in means.items()}
    noise_text = (f" Seed noise: pooled std {s:.3f} over {conds} replicated conditions; a range "
                  "counts above 2 s sqrt(1/n_max + 1/n_min) (column 'noise').")
  verdict = _factor_verdict(ranges, noise, factors, versus)
  top, top_versus = max(ranges[f] for f in factors), max(ranges[f] for f in versus)
  comparison = f"max range over {', '.join(factors)} > max range over {', '.join(versus)}"
  values = "; ".join(f"{f}: {ranges[f]:.3f}" for f in factors + versus)
  lines = _table(["claim", "comparison", "metric", "range of marginal means", "diff",
                  "verdict"],
                 [[claim["name"], comparison, f"`{claim['metric']}`", values,
                   f"{top - top_versus:+.3f}", f"**{verdict}**"]])
  body = []
  for f in factors + versus:
    for k, (level, s) in enumerate(means[f].items()):
      body.append([f if k == 0 else "", "factor" if f in factors else "versus", level, str(s),
                   s.n, f"{ranges[f]:.3f}" if k == 0 else "",
                   f"{noise[f]:.3f}" if noise and k == 0 else ""])
  lines += [""] + _table(["factor", "role", "level", "marginal mean ± std", "n", "range",
                          "noise"], body)
  if noise_text:
    lines += ["", noise_text.strip()]
  return Outcome(claim["name"], claim["kind"], verdict, f"{comparison} on `{claim['metric']}`",
                 lines)


# --- loading, checking and evaluating -----------------------------------------------------------

def validate(claim) -> None:
  """Checks a claim's shape (kind, required fields, margin) before any row is read."""
  if not isinstance(claim, dict):
    raise ClaimError({}, "claim", f"expected a dict, got {type(claim).__name__}")
  if not claim.get("name"):
    raise ClaimError(claim, "name", "missing")
  kind = claim.get("kind")
  try:
    rule = KINDS.get(kind)
  except UnknownNameError as e:  # the claim and its field say where the bad kind was written
    raise ClaimError(claim, "kind", f"unknown kind '{kind}'; known: {KINDS.names()}") from e
  for field in rule.required:
    if claim.get(field) in (None, "", [], ()):
      raise ClaimError(claim, field, f"required by kind '{kind}'")
  if "margin" in rule.required and (number(claim["margin"]) is None
                                           or number(claim["margin"]) < 0):
    raise ClaimError(claim, "margin", f"expected a number >= 0, got {claim['margin']!r}")


def select_rows(claim, rows) -> list[dict]:
  """The rows a claim is about: `group`, minus `exclude_groups`, matching `where`."""
  out = list(rows)
  if claim.get("group"):
    out = [r for r in out if str(r.get("group") or "") == str(claim["group"])]
    if not out:
      groups = sorted({str(r.get("group") or "") for r in rows})
      raise ClaimError(claim, "group", f"no rows in group '{claim['group']}' (groups: {groups})")
  excluded = {str(g) for g in claim.get("exclude_groups") or ()}
  out = [r for r in out if str(r.get("group") or "") not in excluded]
  for col, value in (claim.get("where") or {}).items():
    out = [r for r in out if level_text(coordinate(r, col)) == level_text(value)]
  if not out:
    raise ClaimError(claim, "where" if claim.get("where") else "exclude_groups",
                     "no rows left after selection")
  if not any(claim["metric"] in r for r in out):
    raise ClaimError(claim, "metric", f"no column '{claim['metric']}' in the claim's rows")
  return out


def evaluate(claim, rows, by=("arm",)) -> Outcome:
  validate(claim)
  return KINDS.get(claim["kind"])(claim, select_rows(claim, rows), tuple(by), rows)


def evaluate_all(claims, rows, by=("arm",)) -> list[Outcome]:
  for c in claims:  # every claim's shape first: a typo in the last one fails before any work
    validate(c)
  return [evaluate(c, rows, by) for c in claims]


def load(spec: str) -> list[dict]:
  """The claims of `configs/claims/NAME.py[:arg]` (its get_claims(arg)), shapes checked."""
  claims = config_lib.call_config_file(spec, "get_claims", field="claims")
  if not isinstance(claims, (list, tuple)):
    raise ClaimError({}, "get_claims", f"'{spec}' returned {type(claims).__name__}, not a list")
  for c in claims:
    validate(c)
  return list(claims)


def section(outcomes: list[Outcome], source: str = "") -> list[str]:
  """The report's `## Claims`: verdicts first, then the rules used, then one table per claim."""
  lines = ["## Claims", ""]
  if source:
    lines += [f"Claims from `{source}`, each decided by the rule of its kind "
              "(mmscale/scaling/claims.py).", ""]
  lines += [f"- **{o.verdict}**: {o.name} ({o.statement})" for o in outcomes] + [""]
  kinds = list(dict.fromkeys(o.kind for o in outcomes))
  lines += ["Rules:", ""] + [f"- `{k}`: {RULES[k]}" for k in kinds]
  if any(k in ("greater", "at_most", "equivalent") for k in kinds):
    lines += [f"- {ONE_SEED_RULE}"]
  if any(o.verdict == NO_VARIANCE for o in outcomes):
    lines += [f"- {NO_VARIANCE_RULE}"]
  lines += [""]
  for k, o in enumerate(outcomes, 1):
    lines += [f"### {k}. {o.name}", ""] + o.lines + [""]
  return lines
