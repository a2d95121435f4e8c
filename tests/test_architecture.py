"""The import rules between mmscale packages hold (import-linter contracts in setup.cfg)."""

import os
import subprocess
import sys


def test_import_contracts_hold():
  lint = os.path.join(os.path.dirname(sys.executable), "lint-imports")
  proc = subprocess.run([lint, "--config", "setup.cfg"], capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
  assert "0 broken" in proc.stdout
