"""Knowledge-density scaling sweeps: points, launchers, the results table, fits and the report.

This package reads configs through `mmscale.config` and runs training and evaluation only through
their public entry points (`python -m mmscale.train`, `python -m mmscale.eval`), in subprocesses
or on remote machines, so a point runs the same way on every launcher; it never imports the
trainer (an import-linter contract in setup.cfg). docs/scaling.md describes the modules and tools.
"""
