"""Configs: the schema with defaults, loading `path.py:arg` files, derived fields and validation.

Every run is described by one `ml_collections.ConfigDict`. `base_config()` is the schema: a field
that is not in it is an error (typos must not silently become defaults). `validate_config` runs
before anything is compiled and raises `ConfigError` naming the field and the expected value.
"""

from __future__ import annotations

import importlib.util
import math
import os

import ml_collections

from mmscale.errors import ConfigError
from mmscale.eval import settings as eval_settings

MESH_AXES = ("data", "fsdp", "tensor", "expert")

# Logical axis -> mesh axes. Params use the short names, activations the `activation_*` names, so
# the batch can be split over `fsdp` while weights are split over it too (ZeRO-3 style).
DEFAULT_RULES = (
    ("activation_batch", ("data", "fsdp")),
    ("activation_length", None),
    ("activation_embed", None),
    ("activation_mlp", "tensor"),
    ("activation_heads", "tensor"),
    ("activation_kv", None),
    ("activation_vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("kv", None),
    ("vocab", "tensor"),
    ("patches", None),
    ("layers", None),
    ("experts", "expert"),
    ("conv_in", None),
    ("conv_out", "tensor"),
)

LR_RULES = ("constant", "mm1")


def base_config() -> ml_collections.ConfigDict:
  """The full schema with defaults; every other config starts from this."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.world_dir = "data/world"
  c.data.tokenizer = ""  # empty: <world_dir>/tokenizer.model
  c.data.mixture = ml_collections.ConfigDict({"caption": 1.0})
  c.data.seq_len = 64
  c.data.max_images_per_seq = 2
  c.data.pack = True
  c.data.batch_size = 32  # global batch, rows of seq_len
  c.data.shuffle_seed = 0
  c.data.max_skip_fraction = 0.01
  c.data.num_workers = 0
  c.data.sources = ml_collections.ConfigDict()  # name -> {"type": "records"|"tfds", ...}
  c.data.resize = "stretch"  # stretch | pad (keep aspect) | crop (centre)
  c.data.log_every_batches = 100  # realised mixture / packing / skip log interval

  c.model = ml_collections.ConfigDict()
  c.model.name = "mllm"
  c.model.dtype = "float32"
  c.model.param_dtype = "float32"
  c.model.vit = ml_collections.ConfigDict(dict(
      image_size=48, patch_size=16, width=128, depth=2, heads=4, mlp_dim=512, posemb="learned"))
  c.model.connector = ml_collections.ConfigDict(dict(name="mlp", num_tokens=9, hidden_dim=256,
                                                     depth=1))
  c.model.decoder = ml_collections.ConfigDict(dict(
      vocab_size=128, width=128, depth=3, heads=4, kv_heads=2, head_dim=0, mlp_dim=512,
      tie_embeddings=True, rope_theta=10000.0, scan_layers=True, remat_policy="none",
      z_loss=1e-4, dropout_rate=0.0))

  c.mesh = ml_collections.ConfigDict()
  c.mesh.shape = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1, "expert": 1})
  c.mesh.rules = DEFAULT_RULES

  c.optim = ml_collections.ConfigDict(dict(
      lr=1e-3, lr_rule="constant", warmup_steps=100, end_lr_fraction=0.1, weight_decay=0.1,
      b1=0.9, b2=0.95, eps=1e-8, grad_clip=1.0, grad_accum_steps=1))

  c.train = ml_collections.ConfigDict(dict(
      steps=1000, log_every=50, checkpoint_every=250, keep_checkpoints=3, async_checkpoint=True,
      eval_every=0, peak_flops_per_device=0.0))

  # Evaluation fields and defaults have one source: the evaluation suite's own table.
  c.eval = ml_collections.ConfigDict(eval_settings.DEFAULTS)
  return c


def call_config_file(spec: str, function: str = "get_config", field: str = "config"):
  """Imports `path/to/file.py[:arg]` and returns `function(arg)` (big_vision's config files)."""
  path, _, arg = spec.partition(":")
  if not os.path.exists(path):
    raise ConfigError(field, f"file '{path}' does not exist")
  module_spec = importlib.util.spec_from_file_location(f"mmscale_user_{field}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, function):
    raise ConfigError(field, f"'{path}' defines no {function}(arg)")
  return getattr(module, function)(arg or None)


def load_config(spec: str) -> ml_collections.ConfigDict:
  """Loads `path/to/config.py[:arg]` by calling its `get_config(arg)`."""
  return call_config_file(spec)


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses big_vision-style `key=value,key2=value2` config arguments over typed defaults."""
  out = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, sep, value = item.partition("=")
    if not sep or key not in defaults:
      raise ConfigError(f"config argument '{key}'", f"expected one of {sorted(defaults)} as key=value")
    out[key] = _typed_like(defaults[key], value, f"config argument '{key}'")
  return out


def _typed_like(default, value: str, field: str):
  """`value` converted to the type of `default` (bools: 1/true/0/false)."""
  if isinstance(default, bool):
    if value.lower() not in ("1", "true", "0", "false"):
      raise ConfigError(field, f"expected true or false, got '{value}'")
    return value.lower() in ("1", "true")
  try:
    return type(default)(value)
  except ValueError as e:
    raise ConfigError(field, f"expected a value of type {type(default).__name__}, got '{value}'") from e


# Fields whose keys are user-chosen names (arms, sources, mesh axes): checked as a whole.
_OPEN_FIELDS = ("data.mixture", "data.sources", "mesh.shape", "eval.every")


def _flat_keys(cfg, prefix=""):
  for key, value in cfg.items():
    name = f"{prefix}{key}"
    if isinstance(value, ml_collections.ConfigDict) and name not in _OPEN_FIELDS:
      yield from _flat_keys(value, name + ".")
    else:
      yield name


def resolve_mesh_shape(config, num_devices: int) -> dict[str, int]:
  """Mesh axis sizes with the one `-1` axis filled so the product equals `num_devices`."""
  shape = {axis: int(config.mesh.shape.get(axis, 1)) for axis in MESH_AXES}
  unknown = set(config.mesh.shape.keys()) - set(MESH_AXES)
  if unknown:
    raise ConfigError(f"mesh.shape.{sorted(unknown)[0]}", f"unknown mesh axis; expected {MESH_AXES}")
  free = [axis for axis, size in shape.items() if size == -1]
  if len(free) > 1:
    raise ConfigError(f"mesh.shape.{free[1]}", "at most one axis may be -1")
  fixed = math.prod(size for size in shape.values() if size != -1)
  for axis, size in shape.items():
    if size == 0 or size < -1:
      raise ConfigError(f"mesh.shape.{axis}", f"expected a positive size or -1, got {size}")
  if free:
    if num_devices % fixed:
      raise ConfigError(f"mesh.shape.{free[0]}",
                        f"cannot fill: {num_devices} devices not divisible by the other axes ({fixed})")
    shape[free[0]] = num_devices // fixed
  if math.prod(shape.values()) != num_devices:
    raise ConfigError("mesh.shape", f"product of {shape} is {math.prod(shape.values())}, expected "
                      f"the device count {num_devices}; e.g. use data=-1 to fill, or "
                      f"{suggest_mesh(shape, num_devices)}")
  return shape


def suggest_mesh(shape: dict[str, int], num_devices: int) -> dict[str, int]:
  """A mesh that fits `num_devices`, keeping tensor/expert axes where they divide it."""
  out = {"data": 1, "fsdp": 1, "tensor": 1, "expert": 1}
  rest = num_devices
  for axis in ("tensor", "expert", "fsdp"):
    if shape.get(axis, 1) > 0 and rest % shape.get(axis, 1) == 0:
      out[axis] = shape.get(axis, 1)
      rest //= out[axis]
  out["data"] = rest
  return out


def validate_config(config, num_devices: int) -> dict[str, int]:
  """Checks the run-level rules before compilation; returns the resolved mesh shape.

  Model-side rules (ViT, connector and decoder shapes) live with the model
  (`mmscale.models.registry.validate_model_config`); `mmscale.runtime.validate` runs both.
  """
  known = set(_flat_keys(base_config()))
  for name in _flat_keys(config):
    if name not in known:
      raise ConfigError(name, "unknown field (not in mmscale.config.base_config())")
  shape = resolve_mesh_shape(config, num_devices)
  batch_shards = shape["data"] * shape["fsdp"]
  rows = config.data.batch_size
  accum = config.optim.grad_accum_steps
  if accum < 1:
    raise ConfigError("optim.grad_accum_steps", f"expected >= 1, got {accum}")
  if rows % accum or (rows // accum) % batch_shards:
    raise ConfigError("data.batch_size", f"{rows} rows / grad_accum_steps {accum} must be divisible "
                      f"by data x fsdp = {batch_shards}")
  dec = config.model.decoder
  if dec.heads % shape["tensor"]:
    raise ConfigError("model.decoder.heads",
                      f"{dec.heads} not divisible by the tensor axis ({shape['tensor']})")
  if config.model.vit.heads % shape["tensor"]:
    raise ConfigError("model.vit.heads",
                      f"{config.model.vit.heads} not divisible by the tensor axis ({shape['tensor']})")
  if config.optim.lr_rule not in LR_RULES:
    raise ConfigError("optim.lr_rule", f"expected one of {LR_RULES}, got '{config.optim.lr_rule}'")
  for field in ("steps", "log_every", "checkpoint_every", "keep_checkpoints"):
    if config.train[field] < 1:
      raise ConfigError(f"train.{field}", f"expected >= 1, got {config.train[field]}")
  if config.data.seq_len < config.model.connector.num_tokens + 2:
    raise ConfigError("data.seq_len", f"{config.data.seq_len} cannot hold one image "
                      f"({config.model.connector.num_tokens} tokens) and text")
  if not config.data.mixture or any(w < 0 for w in config.data.mixture.values()) \
      or sum(config.data.mixture.values()) <= 0:
    raise ConfigError("data.mixture", "expected {arm: weight} with weights >= 0 summing to > 0")
  return shape


def tokenizer_path(config) -> str:
  return config.data.tokenizer or os.path.join(config.data.world_dir, "tokenizer.model")
