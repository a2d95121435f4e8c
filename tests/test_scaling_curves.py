"""Learning curves: a fake run directory (config.json + eval/step_*.json) becomes one long table,
and the learnable-at rule (gap >= 0.10 over majority, significant at p < 0.01) finds the first step
that passes it, or none."""

import json
import os
import sys

import pytest
from scipy import stats

from mmscale.scaling import curves

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# step -> (attribute accuracy, count accuracy); attribute: majority 0.2 of 500 questions, crosses
# at step 20 (0.25 is a gap of 0.05 only). count: majority 0.5 of 20 questions, gap 0.15 at every
# step but 13/20 against 0.5 has p = 0.13: never significant.
STEPS = {10: (0.25, 0.65), 20: (0.35, 0.65), 100: (0.60, 0.65)}


def _results(step, attr, count):
  return {"step": step, "vqa/accuracy/attribute": attr, "vqa/majority/attribute": 0.2,
          "vqa/count/attribute": 500, "vqa/accuracy/count": count, "vqa/majority/count": 0.5,
          "vqa/count/count": 20, "vqa/accuracy/all": (attr * 500 + count * 20) / 520,
          "vqa/count/all": 520, "heldout/loss": 1.0 / step,
          "decoding": {"temperature": 0.0}}


def _fake_run(root, name="r"):
  workdir = root / name
  (workdir / "eval").mkdir(parents=True)
  (workdir / "config.json").write_text(json.dumps({"data": {"batch_size": 4, "seq_len": 8}}))
  for step, (attr, count) in STEPS.items():
    (workdir / "eval" / f"step_{step}.json").write_text(json.dumps(_results(step, attr, count)))
  (workdir / "eval" / "results.json").write_text("{}")  # the latest-values file is not a step
  return str(workdir)


def test_collect_rows(tmp_path):
  rows = curves.collect([("a", _fake_run(tmp_path))])
  assert [r["step"] for r in rows] == [10, 20, 100]  # numeric order, not 'step_100' < 'step_20'
  assert [r["tokens"] for r in rows] == [320, 640, 3200]  # step x 4 rows x 8 tokens
  assert rows[1]["vqa/accuracy/attribute"] == 0.35 and "decoding" not in rows[1]
  back = curves.read_csv(curves.write_csv(rows, str(tmp_path / "c.csv")))
  assert back[2]["run"] == "a" and back[2]["heldout/loss"] == pytest.approx(0.01)


def test_missing_files_are_named(tmp_path):
  with pytest.raises(ValueError, match="run 'x': no eval/step_"):
    curves.read_run("x", str(tmp_path))
  with pytest.raises(ValueError, match="expected NAME=WORKDIR"):
    curves.parse_run("runs/a")


def test_learnable_at(tmp_path):
  rows = curves.collect([("a", _fake_run(tmp_path))])
  row, gap, p = curves.learnable_at(rows, "attribute")
  assert row["step"] == 20 and gap == pytest.approx(0.15)
  assert p == pytest.approx(stats.binom.sf(174, 500, 0.2))
  assert curves.learnable(rows[0], "attribute")[0] is False  # significant, but gap 0.05
  assert curves.learnable_at(rows, "count") is None  # gap 0.15 on 20 questions: chance
  assert curves.binomial_p(0.65, 0.5, 20) > 0.01
  table = "\n".join(curves.learnable_table(rows))
  assert "| a | attribute | 20 | 640 | 0.350 | 0.200 | +0.150 |" in table
  assert "| a | count | not within 100 steps |" in table


def test_majority_of_all_is_count_weighted():
  row = {"vqa/majority/a": 0.2, "vqa/count/a": 30, "vqa/majority/b": 0.5, "vqa/count/b": 10,
         "vqa/majority/a_sub": 0.9, "vqa/count/a_sub": 5, "vqa/count/all": 40,
         "vqa/accuracy/a": 0.3, "vqa/accuracy/b": 0.6, "vqa/accuracy/a_sub": 0.3,
         "vqa/accuracy/all": 0.4}
  assert curves.majority(row, "all") == pytest.approx((0.2 * 30 + 0.5 * 10) / 40)  # a_sub left out
  assert curves.majority({**row, "vqa/count/all": 41}, "all") is None  # counts must add up


def test_tool_writes_the_table(tmp_path):
  sys.path.insert(0, os.path.join(REPO, "tools"))
  import curves as curves_tool  # pylint: disable=import-outside-toplevel
  out = tmp_path / "c.csv"
  assert curves_tool.main(["curves.py", "--run", f"a={_fake_run(tmp_path, 'a')}",
                           "--run", f"b={_fake_run(tmp_path, 'b')}", "--out", str(out)]) == 0
  rows = curves.read_csv(str(out))
  assert [(r["run"], r["step"]) for r in rows][:4] == [("a", 10), ("a", 20), ("a", 100), ("b", 10)]
  assert list(rows[0])[:3] == ["run", "step", "tokens"]


def test_form_majority_is_the_baseline_and_holds_for_the_whole_run():
  # knowledge: 0.45 beats the type majority (0.2) but not the form majority (0.40) by 0.10; the
  # form majority is reported only by the last evaluation and applies to the earlier ones too.
  rows = [{"run": "r", "step": s, "tokens": s, "vqa/accuracy/knowledge": 0.45,
           "vqa/majority/knowledge": 0.2, "vqa/count/knowledge": 1500} for s in (10, 20)]
  rows[1]["vqa/form_majority/knowledge"] = 0.40
  assert curves.learnable_at(rows[:1], "knowledge")[0]["step"] == 10  # type majority only
  by_run = curves.runs(rows)
  assert [r["vqa/form_majority/knowledge"] for r in by_run["r"]] == [0.40, 0.40]
  assert "vqa/form_majority/knowledge" not in rows[0]  # the input rows are not changed
  assert curves.learnable_at(by_run["r"], "knowledge") is None
  assert "not within 20 steps" in "\n".join(curves.learnable_table(rows))
