"""Claims get the verdict their rule gives on hand-made rows: a clear win holds, a reversal does
not, seed noise shows nothing, one seed gives no verdict; bad claims fail naming claim and field."""

import os

import numpy as np
import pytest
from scipy import stats

from mmscale.scaling import claims

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
M = "vqa/accuracy/all"


def _rows(values: dict, group="format", metric=M, **extra) -> list[dict]:
  """arm -> per-seed values -> one row per seed."""
  return [{"name": f"{arm}_seed{s}", "group": group, "arm": arm, "seed": s, metric: v, **extra}
          for arm, vs in values.items() for s, v in enumerate(vs)]


def _verdict(kind, values, **fields):
  claim = {"name": "c", "kind": kind, "metric": M, "a": "a", "b": "b", **fields}
  return claims.evaluate(claim, _rows(values))


CLEAR = {"a": [0.60, 0.61, 0.62], "b": [0.50, 0.51, 0.52]}
REVERSED = {"a": [0.50, 0.51, 0.52], "b": [0.60, 0.61, 0.62]}
NOISY = {"a": [0.50, 0.60, 0.55], "b": [0.52, 0.58, 0.54]}


@pytest.mark.parametrize("values, verdict", [
    (CLEAR, claims.HELD), (REVERSED, claims.NOT_HELD), (NOISY, claims.NOT_SHOWN),
    ({"a": [0.6], "b": [0.5, 0.51]}, claims.ONE_SEED)])
def test_greater(values, verdict):
  out = _verdict("greater", values)
  assert out.verdict == verdict
  assert f"**{verdict}**" in "\n".join(out.lines)


def test_one_seed_still_shows_the_diff():
  text = "\n".join(_verdict("greater", {"a": [0.6], "b": [0.5]}).lines)
  assert "+0.100 (no interval: one seed)" in text and "a: 0.600 (n=1)" in text


@pytest.mark.parametrize("values, verdict", [
    ({"a": [0.50, 0.51, 0.52], "b": [0.50, 0.51, 0.52]}, claims.HELD),
    ({"a": [0.70, 0.71, 0.72], "b": [0.50, 0.51, 0.52]}, claims.NOT_HELD),
    (NOISY, claims.INCONCLUSIVE), ({"a": [0.5], "b": [0.5]}, claims.ONE_SEED)])
def test_at_most(values, verdict):
  assert _verdict("at_most", values, margin=0.03).verdict == verdict


@pytest.mark.parametrize("values, verdict", [
    ({"a": [0.505, 0.51, 0.515], "b": [0.50, 0.51, 0.52]}, claims.HELD),
    ({"a": [0.30, 0.31, 0.32], "b": [0.50, 0.51, 0.52]}, claims.NOT_HELD),
    (NOISY, claims.INCONCLUSIVE)])
def test_equivalent(values, verdict):
  out = _verdict("equivalent", values, margin=0.03)
  assert out.verdict == verdict
  assert "90% CI" in "\n".join(out.lines)


def test_welch_interval_matches_scipy():
  a, b = [0.61, 0.58, 0.66, 0.60], [0.52, 0.55, 0.50]
  diff, low, high = claims.welch_interval(a, b, 0.95)
  ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
  assert diff == pytest.approx(np.mean(a) - np.mean(b))
  assert (low, high) == pytest.approx((ci.low, ci.high))


@pytest.mark.parametrize("kind", ["greater", "at_most", "equivalent"])
def test_two_constant_arms_get_no_verdict(kind):
  """Every seed the same on both sides: no noise estimate, so no (zero-width) interval."""
  out = _verdict(kind, {"a": [0.6, 0.6, 0.6], "b": [0.5, 0.5]}, margin=0.03)
  assert out.verdict == claims.NO_VARIANCE
  assert "no interval: every seed gave the same value" in "\n".join(out.lines)
  assert claims.NO_VARIANCE_RULE in "\n".join(claims.section([out]))
  diff, low, high = claims.welch_interval([0.6, 0.6], [0.5, 0.5], 0.95)
  assert diff == pytest.approx(0.1) and np.isnan(low) and np.isnan(high)


@pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")
def test_one_constant_arm_still_gets_an_interval():
  a, b = [0.6, 0.6, 0.6], [0.50, 0.52, 0.51]
  diff, low, high = claims.welch_interval(a, b, 0.95)
  ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
  assert (low, high) == pytest.approx((ci.low, ci.high)) and low < diff < high


def _density_rows(score_by: str, seeds=3, conditions=5):
  """Conditions whose score follows `coverage` or `task_diversity` (the other is reversed)."""
  rows = []
  for k in range(conditions):
    cov, div = 0.2 + 0.1 * k, conditions - k
    for s in range(seeds):
      score = (cov if score_by == "coverage" else -cov) + 0.001 * s
      rows.append({"name": f"c{k}_{s}", "group": "format" if k % 2 else "density", "arm": f"c{k}",
                   "seed": float(s), "coverage": cov, "task_diversity": div, M: score})
  return rows


def test_correlation_verdicts():
  claim = {"name": "coverage", "kind": "correlation", "metric": M, "x": "coverage",
           "versus": "task_diversity"}
  held = claims.evaluate(claim, _density_rows("coverage"))
  assert held.verdict == claims.HELD
  assert "3/3 seeds" in "\n".join(held.lines)
  assert claims.evaluate(claim, _density_rows("diversity")).verdict == claims.NOT_HELD
  few = claims.evaluate(claim, _density_rows("coverage", conditions=3))
  assert "only 3 conditions" in "\n".join(few.lines)


def test_exclude_groups_and_arms_across_groups():
  rows = _density_rows("coverage") + [
      {"name": "mm1", "group": "mm1_connector", "arm": "mm1", "seed": 0, "coverage": 0.0,
       "task_diversity": 0, M: 0.99}]
  claim = {"name": "c", "kind": "correlation", "metric": M, "exclude_groups": ["mm1_connector"]}
  assert "over 5 conditions" in "\n".join(claims.evaluate(claim, rows).lines)
  # c1 is in 'format', c0 in 'density': a claim without `group` compares them across groups
  across = {"name": "d", "kind": "greater", "metric": M, "a": "c1", "b": "c0"}
  assert claims.evaluate(across, rows).verdict == claims.HELD
  with pytest.raises(claims.ClaimError, match="field 'b'.*'c0'"):
    claims.evaluate({**across, "group": "format"}, rows)


def _mm1_rows(strong: str):
  """res x image_tokens x connector grid; only `strong` moves the score much. No factor columns:
  the levels are read from the config argument string."""
  rows = []
  for res in (48, 96):
    for k in (4, 9):
      for conn in ("avgpool", "attnpool", "cabstractor"):
        level = {"res": res == 96, "connector": conn == "cabstractor"}[strong]
        rows.append({"name": f"{conn}_{res}_{k}", "group": "mm1_connector", "seed": 0,
                     "config": f"configs/scaling/point.py:size=s,res={res},connector={conn},"
                               f"image_tokens={k}",
                     M: 0.5 + 0.1 * level + 0.01 * (k == 9)})
  return rows


def test_factor_effects():
  claim = {"name": "mm1", "kind": "factor_effects", "metric": M, "group": "mm1_connector",
           "factors": ["res", "image_tokens"], "versus": ["connector"]}
  held = claims.evaluate(claim, _mm1_rows("res"))
  assert held.verdict == claims.HELD
  text = "\n".join(held.lines)
  # res 48: six rows at 0.5 (+0.01 for k=9) -> 0.505; res 96: 0.605; range 0.100
  assert "| res | factor | 48 | 0.505 ± 0.005 | 6 | 0.100 |" in text
  assert "|  | factor | 96 | 0.605 ± 0.005 | 6 |  |" in text
  assert claims.evaluate(claim, _mm1_rows("connector")).verdict == claims.NOT_HELD


def _replicated_rows(std: float):
  """Two arms x 3 seeds in another group, each arm's seeds spread with sample std `std`."""
  return [{"name": f"{arm}_{k}", "group": "format", "arm": arm, "seed": k,
           M: 0.5 + std * (k - 1)} for arm in ("a", "b") for k in range(3)]


def test_factor_effects_judged_against_seed_noise_from_other_rows():
  claim = {"name": "mm1", "kind": "factor_effects", "metric": M, "group": "mm1_connector",
           "factors": ["res", "image_tokens"], "versus": ["connector"],
           "noise_from": {"exclude_groups": ["mm1_connector"]}}
  # Noise s = 0.01: the res range 0.100 is far above 2 s sqrt(1/6 + 1/6) = 0.0115 -> held.
  quiet = claims.evaluate(claim, _mm1_rows("res") + _replicated_rows(0.01))
  assert quiet.verdict == claims.HELD
  text = "\n".join(quiet.lines)
  assert "| res | factor | 48 | 0.505 ± 0.005 | 6 | 0.100 | 0.012 |" in text
  assert "pooled std 0.010 over 2 replicated conditions" in text
  # Noise s = 0.1: every range is within 2 SE (res: 0.115, connector: 0.141) -> not shown.
  noisy = claims.evaluate(claim, _mm1_rows("res") + _replicated_rows(0.1))
  assert noisy.verdict == claims.NOT_SHOWN
  # A versus factor that clears the noise and beats every factor -> did not hold.
  assert claims.evaluate(claim, _mm1_rows("connector") + _replicated_rows(0.01)).verdict == \
      claims.NOT_HELD
  with pytest.raises(claims.ClaimError, match="field 'noise_from'.*>= 2 seeds"):
    claims.evaluate(claim, _mm1_rows("res") + _replicated_rows(0.01)[:1])


def test_factor_value_column_then_config():
  row = {"name": "p", "res": 96.0, "config": "configs/scaling/point.py:res=48,connector=avgpool"}
  assert claims.factor_value(row, "res") == "96"  # the column wins (read back from CSV: 96.0)
  assert claims.factor_value(row, "connector") == "avgpool"
  assert claims.factor_value({"res": "", "config": "p.py:res=48"}, "res") == "48"
  with pytest.raises(ValueError, match="factor 'image_tokens'"):
    claims.factor_value(row, "image_tokens")
  claim = {"name": "mm1", "kind": "factor_effects", "metric": M, "factors": ["dropout"],
           "versus": ["connector"]}
  with pytest.raises(claims.ClaimError, match="claim 'mm1': field 'factors': factor 'dropout'"):
    claims.evaluate(claim, _mm1_rows("res"))


@pytest.mark.parametrize("claim, match", [
    ({"name": "x", "kind": "bigger", "metric": M, "a": "a", "b": "b"},
     "claim 'x': field 'kind': unknown kind 'bigger'"),
    ({"name": "x", "kind": "greater", "metric": M, "a": "a", "b": "zzz"},
     "claim 'x': field 'b': no rows with arm = 'zzz'"),
    ({"name": "x", "kind": "greater", "metric": "vqa/accuracy/nope", "a": "a", "b": "b"},
     "claim 'x': field 'metric': no column 'vqa/accuracy/nope'"),
    ({"name": "x", "kind": "at_most", "metric": M, "a": "a", "b": "b"},
     "claim 'x': field 'margin': required"),
    ({"name": "x", "kind": "greater", "metric": M, "a": "a", "b": "b", "group": "nope"},
     "claim 'x': field 'group': no rows in group 'nope'"),
    ({"kind": "greater", "metric": M, "a": "a", "b": "b"}, "field 'name': missing"),
])
def test_bad_claims_name_claim_and_field(claim, match):
  with pytest.raises(claims.ClaimError, match=match):
    claims.evaluate(claim, _rows(CLEAR))


def test_claims_file_loads(tmp_path):
  loaded = claims.load(os.path.join(REPO, "configs", "claims", "knowledge_world.py"))
  assert {c["kind"] for c in loaded} == set(claims.KINDS)
  bad = tmp_path / "bad.py"
  bad.write_text("def get_claims(arg=None):\n  return [{'name': 'q', 'kind': 'greater'}]\n")
  with pytest.raises(claims.ClaimError, match="claim 'q': field 'metric'"):
    claims.load(str(bad))


def test_section_lists_verdicts_first():
  outcomes = [_verdict("greater", CLEAR), _verdict("at_most", NOISY, margin=0.03)]
  text = "\n".join(claims.section(outcomes, "configs/claims/x.py"))
  assert text.index("- **held**: c") < text.index("### 1. c")
  assert "- **inconclusive**: c" in text and "`at_most`:" in text
