"""tools/report.py regenerates the report (tables, fits, correlations, PNGs) from a results table
alone: a small fixture table with known structure, written as CSV, no run directories."""

import csv
import json
import os

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fixture_rows():
  """3 arms x 3 budgets x 2 seeds; error = a * C^-b per arm, coverage ordered like the score."""
  rows = []
  arms = {"caption": (0.4, 0.05, 2), "enriched": (0.6, 0.07, 1), "vqa": (0.5, 0.06, 5)}
  for arm, (cov, b, formats) in arms.items():
    for tokens, flops in ((1000, 1e12), (4000, 4e12), (16000, 1.6e13)):
      for seed in (0, 1):
        err = 3.0 * flops ** -b * (1 + 0.01 * seed)
        rows.append({"name": f"{arm}_{tokens}_s{seed}", "group": "format", "arm": arm,
                     "size": "xs", "tokens": tokens, "seed": seed, "steps": tokens // 512,
                     "tokens_trained": tokens, "flops": flops, "final_loss": 2.0 - seed * 0.1,
                     "git_commit": "abc123", "coverage": cov, "task_diversity": formats,
                     "vqa/accuracy/all": 1 - err, "vqa/accuracy/count": 0.9,
                     "vqa/majority/all": 0.3, "heldout/loss": 1.2})
  return rows


def test_report_from_csv_table(tmp_path):
  import sys  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, os.path.join(REPO, "tools"))
  import report as report_tool  # pylint: disable=import-outside-toplevel
  rows = _fixture_rows()
  table = tmp_path / "results.csv"
  with open(table, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
  out = tmp_path / "docs" / "fixture.md"
  assert report_tool.main(["report.py", f"--results={table}", f"--out={out}"]) == 0
  text = out.read_text()
  for needle in ("## Comparison: format", "### Scaling fits", "Spearman", "## Points",
                 "| caption | xs | 1000 | 2 |", "fixture_plots/format_scaling.png"):
    assert needle in text, needle
  # the fits recover each arm's exponent from the table
  for arm, b in (("caption", 0.05), ("enriched", 0.07), ("vqa", 0.06)):
    line = next(l for l in text.split("\n") if l.startswith(f"| {arm} | 6 | 3 |"))
    assert float(line.split("|")[5]) == pytest.approx(b, abs=2e-3)
  # coverage orders the arms like the score (rho = 1); diversity does not (hand: -0.5)
  cov = next(l for l in text.split("\n") if l.startswith("| coverage |"))
  div = next(l for l in text.split("\n") if l.startswith("| task_diversity |"))
  assert cov.split("|")[3].strip() == "1.000" and div.split("|")[3].strip() == "-0.500"
  for png in ("format_accuracy.png", "format_scaling.png", "format_correlation.png"):
    assert (tmp_path / "docs" / "fixture_plots" / png).stat().st_size > 1000
  assert np.isfinite(float(cov.split("|")[3]))


def _write_csv(path, rows):
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
  return str(path)


def _mm1_rows():
  """The MM1 grid as a second table: factor levels only in the config strings; res moves the
  score by 0.1, the connector not at all."""
  return [{"name": f"{conn}_res{res}_k{k}", "group": "mm1_connector", "arm": "mm1_45_45_10",
           "size": "s", "tokens": 8000, "seed": 0, "flops": 1e13, "git_commit": "def456",
           "config": f"configs/scaling/point.py:size=s,res={res},connector={conn},image_tokens={k}",
           "vqa/accuracy/all": 0.4 + 0.1 * (res == 96) + 0.01 * (k == 9)}
          for res in (48, 96) for k in (4, 9) for conn in ("avgpool", "cabstractor")]


CLAIMS = '''
def get_claims(arg=None):
  return [
      {"name": "Enriched beats captions", "kind": "greater", "metric": "vqa/accuracy/all",
       "a": "enriched", "b": "caption", "where": {"tokens": 16000}},
      {"name": "Coverage predicts", "kind": "correlation", "metric": "vqa/accuracy/all",
       "exclude_groups": ["mm1_connector"]},
      {"name": "MM1 resolution", "kind": "factor_effects", "metric": "vqa/accuracy/all",
       "group": "mm1_connector", "factors": ["res", "image_tokens"], "versus": ["connector"]},
  ]
'''


def test_report_with_claims_curves_preamble_and_two_tables(tmp_path):
  import json  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, os.path.join(REPO, "tools"))
  import report as report_tool  # pylint: disable=import-outside-toplevel
  from mmscale.scaling import curves  # pylint: disable=import-outside-toplevel
  density = _write_csv(tmp_path / "density.csv", _fixture_rows())
  mm1 = tmp_path / "mm1.json"
  mm1.write_text(json.dumps({"rows": _mm1_rows(), "failed": [], "pending": []}))
  (tmp_path / "claims.py").write_text(CLAIMS)
  (tmp_path / "preamble.md").write_text("Setup: hand-written.\n\n    python tools/report.py ...\n")
  curve_rows = [{"run": "run1", "step": s, "tokens": 100 * s, "vqa/accuracy/count": acc,
                 "vqa/majority/count": 0.3, "vqa/count/count": 400}
                for s, acc in ((10, 0.32), (20, 0.5), (30, 0.6))]
  curves.write_csv(curve_rows, str(tmp_path / "curves.csv"))
  out = tmp_path / "docs" / "kw.md"
  assert report_tool.main([
      "report.py", f"--results={density}", f"--results={mm1}", f"--out={out}",
      f"--claims={tmp_path / 'claims.py'}", f"--curves={tmp_path / 'curves.csv'}",
      f"--preamble={tmp_path / 'preamble.md'}",
      "--by_group=mm1_connector=connector,res,image_tokens"]) == 0
  text = out.read_text()
  order = ["# Scaling report: density.csv + mm1.json", "Setup: hand-written.", "Generated by",
           "## Claims", "## Comparison: format", "## Comparison: mm1_connector",
           "## Learning curves", "## Points"]
  assert [text.index(n) for n in order] == sorted(text.index(n) for n in order)
  for needle in ("- **held**: Enriched beats captions", "- **held**: Coverage predicts",
                 "- **held**: MM1 resolution", "| res | factor | 48 | 0.405 ± 0.006 | 4 | 0.100 |",
                 "| cabstractor,96,9 | s | 8000 | 1 |",  # the MM1 group's own conditions
                 "| run1 | count | 20 | 2000 | 0.500 |", "kw_plots/curve_run1.png"):
    assert needle in text, needle
  for png in ("curve_run1.png", "format_accuracy.png", "mm1_connector_accuracy.png"):
    assert (tmp_path / "docs" / "kw_plots" / png).stat().st_size > 1000


def test_report_bad_claim_is_one_error(tmp_path, capsys):
  import sys  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, os.path.join(REPO, "tools"))
  import report as report_tool  # pylint: disable=import-outside-toplevel
  (tmp_path / "claims.py").write_text(
      "def get_claims(arg=None):\n  return [{'name': 'q', 'kind': 'greater', "
      "'metric': 'vqa/accuracy/all', 'a': 'enriched', 'b': 'nope'}]\n")
  table = _write_csv(tmp_path / "r.csv", _fixture_rows())
  with pytest.raises(SystemExit):
    report_tool.main(["report.py", f"--results={table}", f"--claims={tmp_path / 'claims.py'}",
                      f"--out={tmp_path / 'r.md'}"])
  assert "claim 'q': field 'b'" in capsys.readouterr().err
  assert not (tmp_path / "r.md").exists()


def _fake_run(workdir, steps=40, accuracy=0.5):
  """A run directory as training + evaluation leave it: config.json, metrics.jsonl, eval/."""
  os.makedirs(workdir / "eval")
  config = {"seed": 3, "data": {"batch_size": 4, "seq_len": 16, "world_dir": str(workdir / "w"),
                                "mixture": {"vqa": 1.0}, "sources": {}},
            "train": {"steps": steps}}
  (workdir / "config.json").write_text(json.dumps(config))
  (workdir / "metrics.jsonl").write_text(
      '{"step": 1, "loss": 5.5, "flops_per_step": 6400.0, "tokens_per_step": 64}\n'
      f'{{"step": {steps}, "loss": 0.25}}\n')
  results = {"step": steps, "vqa/accuracy/all": accuracy, "vqa/accuracy/count": accuracy,
             "vqa/count/all": 10, "vqa/count/count": 10, "vqa/majority/count": 0.4,
             "heldout/perplexity": 1.5, "package_versions": {"jax": "0.1"},
             "decoding": {"temperature": 0.0},
             "metric_steps": {"vqa/accuracy/all": steps, "heldout/perplexity": steps}}
  (workdir / "eval" / "results.json").write_text(json.dumps(results))
  return workdir


def test_run_rows_report_evaluations_and_chosen_sections(tmp_path, capsys):
  import sys  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, os.path.join(REPO, "tools"))
  import report as report_tool  # pylint: disable=import-outside-toplevel
  from mmscale.scaling import results  # pylint: disable=import-outside-toplevel
  rows = [results.run_row("short", str(_fake_run(tmp_path / "a", 40, 0.5)), group="g",
                          commit="abc"),
          results.run_row("long", str(_fake_run(tmp_path / "b", 80, 0.75)), group="g",
                          commit="abc")]
  assert rows[0]["tokens_trained"] == 40 * 4 * 16 and rows[0]["flops"] == 100.0 * 40 * 64
  assert rows[0]["first_loss"] == 5.5 and rows[0]["final_loss"] == 0.25
  assert rows[0]["package_versions"] == '{"jax": "0.1"}' and "metric_steps" not in rows[0]
  rows[1]["trained_for"] = "heldout_loss,vqa"
  table = results.write_csv(rows, str(tmp_path / "runs.csv"))
  out = tmp_path / "r.md"
  assert report_tool.main(["report.py", f"--results={table}", "--by=name",
                           "--sections=evaluations,accuracy,points", f"--out={out}"]) == 0
  text = out.read_text()
  assert text.index("## Evaluation") < text.index("## Comparison: g") < text.index("## Points")
  assert "### Scaling fits" not in text and "Spearman" not in text
  assert "2,560 training positions, 2.56e+05 FLOPs; training loss 5.500 at step 1" in text
  assert "trained for: vqa, heldout_loss" in text  # the second row's split, as eval prints it
  assert "| long |  | 5120 | 1 | 0.750 | 0.750 |" in text
  with pytest.raises(SystemExit):
    report_tool.main(["report.py", f"--results={table}", "--sections=points,nope",
                      f"--out={tmp_path / 'x.md'}"])
  assert "unknown report section(s) ['nope']" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    report_tool.main(["report.py", f"--results={table}", "--sections=probes",
                      f"--out={tmp_path / 'x.md'}"])
  assert "--sections=probes needs --probe" in capsys.readouterr().err


def test_probe_table_shows_a_ratio_only_above_the_noise():
  from mmscale.analysis import probe  # pylint: disable=import-outside-toplevel
  result = {"layers": [1], "k": 8, "beta": 0.1, "num_questions": 1600, "step": 9,
            "counts": {"all": 1600, "count": 1600}, "majority": {"count": 0.5},
            "erasure": {q: {"base": 0.8, "text_erased": 0.5, "image_erased": 0.8 - di,
                            "text_drop": 0.3, "image_drop": di, "ratio": 0.3 / di}
                        for q, di in (("all", 0.05), ("count", 0.015))},
            "tccd": {"0.0": {q: {"accuracy": 0.8, "gain": 0.0} for q in ("all", "count")},
                     "1.0": {q: {"accuracy": 0.7, "gain": -0.1} for q in ("all", "count")}}}
  lines = probe.markdown_report(result)
  # SE = sqrt(0.8 * 0.2 / 1600) = 0.01: a 0.05 image drop gives a ratio, 0.015 does not
  assert "| all | 1600 | - | 0.800 | 0.500 | 0.750 | +0.300 | +0.050 | 6.0 |" in lines
  assert "| count | 1600 | 0.500 | 0.800 | 0.500 | 0.785 | +0.300 | +0.015 | - |" in lines
  assert "| 1 | 0.700 (-0.100) | 0.700 (-0.100) |" in lines
