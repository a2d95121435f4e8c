"""The committed reproduction report regenerates, byte for byte, from the committed tables by the
exact command its preamble documents, so no number in it is hand-edited."""

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "docs", "results")
PREAMBLE = os.path.join(RESULTS, "knowledge_world", "preamble.md")
REPORT = os.path.join(RESULTS, "knowledge_world.md")


def documented_report_command() -> list[str]:
  """The `python tools/report.py ...` command of the preamble's command block, as argv."""
  with open(PREAMBLE) as f:
    text = f.read()
  match = re.search(r"^python tools/report\.py .*?(?=\n(?:#|python|```))", text, re.M | re.S)
  assert match, f"{PREAMBLE} documents no `python tools/report.py` command"
  return shlex.split(match.group(0).replace("\\\n", " "))


@pytest.mark.skipif(not os.path.exists(REPORT), reason="no committed reproduction report")
def test_committed_report_regenerates_from_committed_tables(tmp_path):
  argv = documented_report_command()
  assert "--out=docs/results/knowledge_world.md" in argv, argv
  # Same relative layout in a scratch copy, so the plot paths in the markdown are identical.
  scratch = tmp_path / "repo"
  shutil.copytree(os.path.join(REPO, "docs", "results", "knowledge_world"),
                  scratch / "docs" / "results" / "knowledge_world")
  shutil.copytree(os.path.join(REPO, "configs", "claims"), scratch / "configs" / "claims")
  argv = [sys.executable, os.path.join(REPO, "tools", "report.py")] + argv[2:]
  subprocess.run(argv, cwd=scratch, check=True, capture_output=True, text=True)
  with open(REPORT) as f:
    committed = f.read()
  with open(scratch / "docs" / "results" / "knowledge_world.md") as f:
    regenerated = f.read()
  assert regenerated == committed
  plots = scratch / "docs" / "results" / "knowledge_world_plots"
  for name in re.findall(r"\]\((knowledge_world_plots/[^)]+\.png)\)", committed):
    assert (plots / os.path.basename(name)).exists(), name
