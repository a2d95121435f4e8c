"""The one validation of a run: a config in, a resolved `RunSpec` out, before anything compiles.

`validate(config, num_devices)` checks every rule (schema, mesh, batch, model, data, optimizer,
training, evaluation) and raises `ConfigError` naming the first bad field; what it resolves (the
mesh shape, the sharding rules, the batch layout) is read from the `RunSpec` from then on, never
derived again.
"""

from __future__ import annotations

import dataclasses
import os
import re

import ml_collections

from mmscale.config import check_schema
from mmscale.data.batch import BatchLayout
from mmscale.data.transforms import RESIZE_MODES
from mmscale.errors import ConfigError
from mmscale.eval.registry import validate_evals
from mmscale.models.registry import validate_model_config
from mmscale.parallel.mesh import resolve_mesh_shape
from mmscale.parallel.rules import Rules, logical_rules

LR_RULES = ("constant", "mm1")


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """A validated config and what it resolves to; built once per start by `validate`.

  mesh_shape: axis -> size for this run's devices (the one `-1` axis filled).
  rules: the logical axis rules (`config.mesh.rules`) as the hashable tuple flax takes.
  layout: the batch row layout every batch builder uses.
  """
  config: ml_collections.ConfigDict
  mesh_shape: dict
  rules: Rules
  layout: BatchLayout

  @property
  def batch_shards(self) -> int:
    """Blocks the batch is split into (data x fsdp): rows must be a multiple of it."""
    return self.mesh_shape["data"] * self.mesh_shape["fsdp"]


def validate(config, num_devices: int, num_processes: int | None = None) -> RunSpec:
  """Every rule of a run (schema, mesh, batch, model, data, optimizer, training, evaluation),
  checked before anything is built; raises `ConfigError` naming the first bad field."""
  check_schema(config)
  shape = resolve_mesh_shape(config.mesh.shape, num_devices, num_processes)
  batch_shards = shape["data"] * shape["fsdp"]
  rows = config.data.batch_size
  accum = config.optim.grad_accum_steps
  if accum < 1:
    raise ConfigError("optim.grad_accum_steps", f"expected >= 1, got {accum}")
  if rows < 1 or rows % accum or (rows // accum) % batch_shards:
    raise ConfigError("data.batch_size", f"{rows} rows / grad_accum_steps {accum} must be a "
                      f"positive multiple of data x fsdp = {batch_shards}")
  for field, heads in (("model.decoder.heads", config.model.decoder.heads),
                       ("model.decoder.kv_heads", config.model.decoder.kv_heads),
                       ("model.vit.heads", config.model.vit.heads)):
    if heads % shape["tensor"]:
      raise ConfigError(field, f"{heads} not divisible by the tensor axis ({shape['tensor']})")
  validate_model_config(config.model)
  for part in ("decoder", "vit", "connector"):
    path = config.model.init_from[part]
    if path and not os.path.isfile(os.path.join(path, "config.json")):
      raise ConfigError(f"model.init_from.{part}", f"'{path}' is not a Hugging Face checkpoint "
                        "directory (no config.json)")
  layer = config.model.init_from.vit_feature_layer
  if isinstance(layer, bool) or not isinstance(layer, int) or layer >= 0:
    raise ConfigError("model.init_from.vit_feature_layer", f"must be a negative layer index "
                      f"(-1 = the last encoder layer), got {layer!r}")
  if config.model.decoder.moe_every and config.model.decoder.num_experts % shape["expert"]:
    raise ConfigError("model.decoder.num_experts", f"{config.model.decoder.num_experts} not "
                      f"divisible by the expert axis ({shape['expert']})")
  _validate_data(config.data, config.model.connector.num_tokens)
  if config.optim.lr_rule not in LR_RULES:
    raise ConfigError("optim.lr_rule", f"expected one of {LR_RULES}, got '{config.optim.lr_rule}'")
  _validate_groups(config.optim)
  for field in ("steps", "log_every", "checkpoint_every", "keep_checkpoints"):
    if config.train[field] < 1:
      raise ConfigError(f"train.{field}", f"expected >= 1, got {config.train[field]}")
  for field in ("profile_steps", "profile_start", "loss_block_mib"):
    if config.train[field] < 0:
      raise ConfigError(f"train.{field}", f"expected >= 0, got {config.train[field]}")
  for field in ("divergence_loss_factor", "divergence_loss_floor", "divergence_zero_grad_steps"):
    if config.train[field] < 0:
      raise ConfigError(f"train.{field}", f"expected >= 0 (0 = off), got {config.train[field]}")
  if config.train.divergence_loss_factor and config.train.divergence_loss_factor <= 1:
    raise ConfigError("train.divergence_loss_factor",
                      f"expected > 1 (or 0 = off), got {config.train.divergence_loss_factor}")
  validate_evals(config.eval)
  return RunSpec(config=config, mesh_shape=shape, rules=logical_rules(config.mesh.rules),
                 layout=BatchLayout.from_config(config))


def _validate_groups(optim) -> None:
  """optim.freeze: regexes; optim.lr_multipliers: (regex, multiplier > 0) pairs."""
  pairs = [("optim.freeze", p) for p in optim.freeze]
  for item in optim.lr_multipliers:
    if not isinstance(item, (tuple, list)) or len(item) != 2 or not item[1] > 0:
      raise ConfigError("optim.lr_multipliers", f"expected (pattern, multiplier > 0) pairs, got "
                        f"{item!r}")
    pairs.append(("optim.lr_multipliers", item[0]))
  for field, pattern in pairs:
    try:
      re.compile(pattern)
    except (re.error, TypeError) as e:
      raise ConfigError(field, f"{pattern!r} is not a regular expression ({e})") from e


def _validate_data(data, tokens_per_image: int) -> None:
  if data.seq_len < tokens_per_image + 2:
    raise ConfigError("data.seq_len", f"{data.seq_len} cannot hold one image "
                      f"({tokens_per_image} tokens) and text")
  if data.max_images_per_seq < 0:
    raise ConfigError("data.max_images_per_seq", f"must be >= 0, got {data.max_images_per_seq}")
  if not data.mixture or any(w < 0 for w in data.mixture.values()) \
      or sum(data.mixture.values()) <= 0:
    raise ConfigError("data.mixture", "expected {arm: weight} with weights >= 0 summing to > 0")
  if data.resize not in RESIZE_MODES:
    raise ConfigError("data.resize", f"{data.resize!r} is not one of {RESIZE_MODES.names()}")
  if not 0.0 <= data.max_skip_fraction <= 1.0:
    raise ConfigError("data.max_skip_fraction", f"must be in [0, 1], got {data.max_skip_fraction}")
  for field in ("read_threads", "max_image_pixels"):
    if data[field] < 1:
      raise ConfigError(f"data.{field}", f"expected >= 1, got {data[field]}")
  for field in ("num_workers", "pack_rows", "skip_check_min_records"):
    if data[field] < 0:
      raise ConfigError(f"data.{field}", f"expected >= 0, got {data[field]}")
