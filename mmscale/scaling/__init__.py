"""Knowledge-density scaling sweeps: points, launchers, the results table, fits and the report.

Layering (../shared/DESIGN.md): this package uses `mmscale.config` to read configs and runs
training and evaluation only through their public entry points (`python -m mmscale.train`,
`python -m mmscale.eval`) in subprocesses or on remote machines; it never imports the trainer.

  spec.py       Point, loading configs/sweeps/NAME.py, config overrides
  launchers.py  local | tpu | slurm: the exact commands for a point, and running/submitting them
  sweep.py      the idempotent sweep loop (DONE / FAILED / SUBMITTED markers, retries)
  results.py    one row per point (config, commit, metrics, FLOPs, eval, density) -> CSV + JSON
  density.py    semantic coverage and task diversity of an arm (mmscale.knowledge.density)
  fit.py        power-law fits with confidence intervals, Spearman correlation, seed statistics
  plots.py      matplotlib figures
  claims.py     claims with verdicts (greater / at_most / equivalent / correlation / factor effects)
  curves.py     learning curves from W/eval/step_*.json, and the step where a type becomes learnable
  report.py     the markdown report, from the results table (and curves table) alone
"""
