"""`python -m mmscale.eval --config=... --workdir=W [--step=N] [--params=EXPORT_DIR] [--evals=...]`."""

from __future__ import annotations

import logging
import sys

from absl import app, flags
from ml_collections import config_flags

from mmscale.data.batch_spec import example_batch
from mmscale.errors import MmscaleError
from mmscale.eval import params_io
from mmscale.eval.context import EvalContext
from mmscale.eval.runner import DEFAULT_EVALS, format_table, run_evaluators, write_results
from mmscale.parallel import rules as sharding_rules
from mmscale.runtime import build_runtime

_CONFIG = config_flags.DEFINE_config_file("config", None, "config file, path.py[:arg]")
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory with checkpoints/", required=True)
_STEP = flags.DEFINE_integer("step", None, "checkpoint step (default: latest)")
_PARAMS = flags.DEFINE_string("params", None, "an exported params directory (tools/export.py)")
_EVALS = flags.DEFINE_list("evals", list(DEFAULT_EVALS), "evaluators to run")


def main(argv):
  del argv
  logging.getLogger().setLevel(logging.INFO)
  try:
    rt = build_runtime(_CONFIG.value)
    abstract, shardings = sharding_rules.param_shardings(
        rt.model, example_batch(rt.config, rows=1), rt.mesh, rt.rules)
    if _PARAMS.value:
      params, step = params_io.load_exported_params(_PARAMS.value, abstract, shardings), -1
    else:
      params, step = params_io.load_params(_WORKDIR.value, abstract, shardings, _STEP.value)
    ctx = EvalContext(config=rt.config, model=rt.model, params=params, tokenizer=rt.tokenizer,
                      mesh=rt.mesh, rules=rt.rules)
    results = run_evaluators(ctx, _EVALS.value)
  except MmscaleError as e:
    sys.exit(f"error: {e}")
  path = write_results(_WORKDIR.value, step, results)
  print(format_table(results))
  print(f"results: {path}")


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
