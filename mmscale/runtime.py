"""The one context of a run: a validated spec and the objects built from it, built once.

The trainer, its hooks, every evaluator, analysis, generation and export share one `Run`: the
resolved `RunSpec` (config, mesh shape, rules, batch layout), the device mesh, the model, the
tokenizer and the run's params (in training, also its state and metric writer). `build_run`
validates the config (once) and builds the rest; nothing is compiled, so a bad config fails in
seconds. `mmscale.eval.loading.load_run` builds one over a saved run.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import multihost_utils

from mmscale import config as config_lib
from mmscale.data.batch import BatchLayout, empty_rows
from mmscale.data.tokenizer import Tokenizer, load_tokenizer
from mmscale.errors import ConfigError
from mmscale.models.registry import build_model
from mmscale.parallel import mesh as mesh_lib
from mmscale.parallel import rules as sharding_rules
from mmscale.spec import RunSpec, validate


@dataclasses.dataclass
class Run:
  """One run's objects. `params` are the sharded model params (in training: the live state's,
  kept current by the loop); the training-only fields stay None elsewhere."""
  spec: RunSpec
  mesh: jax.sharding.Mesh
  model: nn.Module
  tokenizer: Tokenizer
  workdir: str = ""
  params: Any = None
  state: Any = None              # training: the TrainState
  state_shardings: Any = None    # training: NamedShardings of the state
  writer: Any = None             # training: the metric writer
  last_metrics: dict = dataclasses.field(default_factory=dict)
  stopped_by_signal: bool = False

  @property
  def config(self):
    return self.spec.config

  @property
  def rules(self) -> sharding_rules.Rules:
    return self.spec.rules

  @property
  def layout(self) -> BatchLayout:
    return self.spec.layout

  @property
  def batch_shards(self) -> int:
    """Rows of any batch must be a multiple of this (data x fsdp)."""
    return self.spec.batch_shards

  def rows_per_batch(self) -> int:
    """`eval.batch_size` rounded down to a multiple of the batch shards (at least one each)."""
    rows = self.config.eval.batch_size
    return max(self.batch_shards, rows - rows % self.batch_shards)

  def abstract_params(self):
    """The model's params as boxed ShapeDtypeStructs (one trace of init, nothing allocated)."""
    return sharding_rules.abstract_params(self.model, empty_rows(self.layout, 1), self.mesh,
                                          self.rules)

  def to_global(self, batch: dict) -> dict:
    """Host batch with all rows (identical on every process) -> global arrays; each process
    contributes the rows of its own slice, as in training."""
    rows = next(iter(batch.values())).shape[0]
    index, count = jax.process_index(), jax.process_count()
    local = {k: v[index * rows // count:(index + 1) * rows // count] for k, v in batch.items()}
    return sharding_rules.global_batch(local, self.mesh, self.rules)

  @staticmethod
  def to_host(x) -> np.ndarray:
    """Global array -> the full numpy array on every process."""
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def build_run(config, workdir: str = "", devices=None) -> Run:
  """Validates `config` (the one validation of a start; `ConfigError` names the field), then
  builds the mesh (over `devices`, default all), the model and the tokenizer, whose vocabulary
  must fit the model's."""
  devices = jax.devices() if devices is None else list(devices)
  spec = validate(config, len(devices))
  path = config_lib.tokenizer_path(config)
  if not (os.path.isfile(path) or os.path.isfile(os.path.join(path, "tokenizer.json"))):
    field = "data.tokenizer" if config.data.tokenizer else "data.world_dir"
    raise ConfigError(field, f"no tokenizer at {path} (build the world with tools/build_world.py "
                      "or set data.tokenizer to a SentencePiece .model, a tokenizer.json or a "
                      "checkpoint directory holding one)")
  tokenizer = load_tokenizer(path)
  if tokenizer.vocab_size > config.model.decoder.vocab_size:
    raise ConfigError("model.decoder.vocab_size",
                      f"{config.model.decoder.vocab_size} is smaller than the tokenizer's "
                      f"{tokenizer.vocab_size} pieces ({path})")
  return Run(spec=spec, mesh=mesh_lib.make_mesh(spec.mesh_shape, devices),
             model=build_model(config.model), tokenizer=tokenizer, workdir=workdir)
