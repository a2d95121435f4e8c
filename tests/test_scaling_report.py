"""tools/report.py regenerates the report (tables, fits, correlations, PNGs) from a results table
alone: a small fixture table with known structure, written as CSV, no run directories."""

import csv
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
  assert report_tool.main([f"--results={table}", f"--out={out}"]) == 0
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
