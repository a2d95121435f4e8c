"""`python -m mmscale.eval --config=... --workdir=W [--step=N] [--params=EXPORT_DIR] [--evals=...]`.

Without --config, the run's own `W/config.json` is used. Results go to W/eval/ (step -1 for
exported params) and a table is printed.
"""

from __future__ import annotations

import logging
import sys

from absl import app, flags
from ml_collections import config_flags

from mmscale.errors import MmscaleError
from mmscale.eval.loading import load_context, load_run_config
from mmscale.eval.registry import evaluator_names
from mmscale.eval.runner import configured_evals, format_table, run_evaluators, write_results

_CONFIG = config_flags.DEFINE_config_file("config", None, "config file, path.py[:arg]")
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory with checkpoints/", required=True)
_STEP = flags.DEFINE_integer("step", None, "checkpoint step (default: latest)")
_PARAMS = flags.DEFINE_string("params", None, "an exported params directory (tools/export.py)")
_EVALS = flags.DEFINE_list("evals", None, "evaluators to run (default: eval.evals or all "
                           "defaults); known: " + ",".join(evaluator_names()))


def main(argv):
  del argv
  logging.getLogger().setLevel(logging.INFO)
  try:
    config = _CONFIG.value or load_run_config(_PARAMS.value or _WORKDIR.value)
    ctx, step = load_context(config, _WORKDIR.value, step=_STEP.value, params_dir=_PARAMS.value)
    results = run_evaluators(ctx, _EVALS.value or configured_evals(config))
  except (MmscaleError, ValueError) as e:
    sys.exit(f"error: {e}")
  path = write_results(_WORKDIR.value, step, results)
  print(format_table(results))
  print(f"results: {path}")


if __name__ == "__main__":
  app.run(main)
