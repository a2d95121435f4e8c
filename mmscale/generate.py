"""`python -m mmscale.generate ...`: one-off generation from a trained run, whose flags and code
are in mmscale/eval/generate_cli.py (its docstring documents the command)."""

from mmscale.cli_flags import run
from mmscale.eval.generate_cli import main

if __name__ == "__main__":
  run(main)
