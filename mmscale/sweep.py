"""`python -m mmscale.sweep ...`: the sweep command, whose flags and code are in
mmscale/scaling/cli.py (its docstring documents the command)."""

from mmscale.cli_flags import run
from mmscale.scaling.cli import main

if __name__ == "__main__":
  run(main)
