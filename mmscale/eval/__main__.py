"""`python -m mmscale.eval --config=... --workdir=W [--step=N] [--params=EXPORT_DIR] [--evals=...]
[--tccd_alpha=A --tccd_beta=B --tccd_centroids=PATH]`.

Without --config, the run's own `W/config.json` is used. Results go to W/eval/ (step -1 for
exported params), with the decoding settings used (`decoding`), and a table is printed. W (and
EXPORT_DIR, the centroids) may be local or in a bucket (`gs://...`, any etils.epath path). The
--tccd_* flags set `eval.tccd_*` (text-centroid contrastive decoding, mmscale/eval/contrastive.py)
on whichever config is used; with --config, `--config.eval.tccd_alpha=...` works too.
"""

from __future__ import annotations

import logging

from absl import flags
from ml_collections import config_flags

from mmscale import cli_flags
from mmscale.eval import contrastive
from mmscale.eval.loading import load_run
from mmscale.eval.registry import evaluator_names, validate_evals
from mmscale.eval.runner import evaluate, format_table
from mmscale.eval.taught import taught_evaluators

_CONFIG = config_flags.DEFINE_config_file("config", None, "config file, path.py[:arg]")
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory with checkpoints/", required=True)
_STEP = flags.DEFINE_integer("step", None, "checkpoint step (default: latest)")
_PARAMS = flags.DEFINE_string("params", None, "an exported params directory (tools/export.py)")
_EVALS = flags.DEFINE_list("evals", None, "evaluators to run (default: eval.evals or all "
                           "defaults); known: " + ",".join(evaluator_names()))
_TCCD_ALPHA = flags.DEFINE_float("tccd_alpha", None, "TCCD weight (eval.tccd_alpha; 0 = off)")
_TCCD_BETA = flags.DEFINE_float("tccd_beta", None, "TCCD plausibility cut-off (eval.tccd_beta)")
_TCCD_CENTROIDS = flags.DEFINE_string(
    "tccd_centroids", None, "centroids.npz of tools/probe.py (eval.tccd_centroids; default "
    "W/analysis/centroids.npz)")


def main(argv):
  del argv
  logging.getLogger().setLevel(logging.INFO)
  ctx, step = load_run(_WORKDIR.value, step=_STEP.value, params_dir=_PARAMS.value,
                       config=_CONFIG.value, eval_overrides=dict(
                           tccd_alpha=_TCCD_ALPHA.value, tccd_beta=_TCCD_BETA.value,
                           tccd_centroids=_TCCD_CENTROIDS.value))
  names = validate_evals(ctx.config.eval, _EVALS.value)
  results, path = evaluate(ctx, names, step)
  decoding = contrastive.describe(ctx.config, ctx.workdir)
  taught = taught_evaluators(ctx.config.data)
  print(format_table(results, taught))
  if decoding["tccd_alpha"]:
    print(f"decoded with TCCD: alpha {decoding['tccd_alpha']}, beta {decoding['tccd_beta']}, "
          f"layers {decoding['tccd_layers']}, centroids {decoding['tccd_centroids']}")
  print(f"results: {path}")


if __name__ == "__main__":
  cli_flags.run_with_config_flags(main)  # a mistake: one `error:` line (docs/failures.md)
