"""What training and evaluation both build from a config before any compilation."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax

from mmscale import config as config_lib
from mmscale.data.tokenizer import Tokenizer
from mmscale.errors import ConfigError
from mmscale.models.registry import build_model, validate_model_config
from mmscale.parallel import mesh as mesh_lib
from mmscale.parallel import rules as sharding_rules


@dataclasses.dataclass
class Runtime:
  config: object
  mesh: jax.sharding.Mesh
  rules: tuple
  model: nn.Module
  tokenizer: Tokenizer


def validate(config, num_devices: int) -> dict[str, int]:
  """Every config rule, run-level and model-side; returns the resolved mesh shape."""
  shape = config_lib.validate_config(config, num_devices)
  validate_model_config(config.model)
  return shape


def build_runtime(config) -> Runtime:
  """Validates `config` (raising `ConfigError` naming the field), then builds mesh, model and
  tokenizer. Nothing is compiled, so a bad config fails in seconds."""
  validate(config, jax.device_count())
  tokenizer = Tokenizer(config_lib.tokenizer_path(config))
  if tokenizer.vocab_size > config.model.decoder.vocab_size:
    raise ConfigError("model.decoder.vocab_size",
                      f"{config.model.decoder.vocab_size} is smaller than the tokenizer's "
                      f"{tokenizer.vocab_size} pieces ({config_lib.tokenizer_path(config)})")
  return Runtime(config=config, mesh=mesh_lib.make_mesh(config),
                 rules=sharding_rules.logical_rules(config), model=build_model(config.model),
                 tokenizer=tokenizer)
