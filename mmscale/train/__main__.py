"""`python -m mmscale.train --config=configs/world/tiny.py[:arg] --workdir=W [--config.x=y]`."""

from __future__ import annotations

import logging

from absl import flags
from ml_collections import config_flags

from mmscale import cli_flags
from mmscale.parallel.mesh import maybe_initialize_distributed
from mmscale.train.hooks import EvalHook
from mmscale.train.trainer import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "config file, path.py[:arg]")
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory (checkpoints, logs, eval)")


def main(argv):
  del argv
  logging.getLogger().setLevel(logging.INFO)
  maybe_initialize_distributed()
  config = _CONFIG.value
  ctx = train(config, _WORKDIR.value, hooks=(EvalHook(config.train.eval_every),))
  if ctx.stopped_by_signal:
    logging.info("stopped by signal at step %d; rerun the same command to resume",
                 int(ctx.state.step.addressable_data(0)))  # multi-host: read a local shard


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  cli_flags.run_with_config_flags(main)  # a mistake: one `error:` line (docs/failures.md)
