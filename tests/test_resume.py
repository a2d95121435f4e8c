"""Restarting a workdir with a changed config: a changed model or data section is refused naming
the fields, restart_data restarts the data order explicitly, and config.json keeps its history."""

import json
import os

import pytest

from conftest import tiny_train_config
from mmscale.errors import CheckpointError
from mmscale.train.trainer import train


@pytest.mark.slow
def test_a_changed_config_is_refused_or_restarts_the_data_explicitly(tiny_world, tmp_path):
  workdir = str(tmp_path / "run")
  train(tiny_train_config(tiny_world, steps=4, checkpoint_every=2), workdir)

  wider = tiny_train_config(tiny_world, steps=6, checkpoint_every=2)
  wider.model.decoder.width = 96
  with pytest.raises(CheckpointError, match=r"another model \(model.decoder.width: 64 -> 96\)"):
    train(wider, workdir)

  bigger_batch = tiny_train_config(tiny_world, steps=6, checkpoint_every=2)
  bigger_batch.data.batch_size = 32
  with pytest.raises(CheckpointError, match=r"other data \(data.batch_size: 16 -> 32\).*"
                     r"restart_data=true"):
    train(bigger_batch, workdir)

  bigger_batch.train.restart_data = True
  ctx = train(bigger_batch, workdir)
  assert int(ctx.state.step) == 6
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["data"]["batch_size"] == 32
  with open(os.path.join(workdir, "config_history", "until_step_4.json")) as f:
    assert json.load(f)["data"]["batch_size"] == 16  # the first start's config is kept
