"""Model registry and the model-side rules of config validation (`mmscale.spec.validate`
calls `validate_model_config`, so a bad field fails naming 'model.<field>' before anything is
traced or compiled)."""

import math

import jax.numpy as jnp
import ml_collections
from flax import linen as nn

from mmscale.errors import ConfigError
from mmscale.models.connectors import connector_names, get_connector
from mmscale.models.attention import HALF_DTYPES, KERNEL_NAMES
from mmscale.models.decoder import REMAT_POLICIES
from mmscale.models.layers import ROPE_SCALINGS
from mmscale.models.mllm import MLLM, head_dim, num_patches
from mmscale.models.moe import DISPATCHES
from mmscale.registry import Registry

MODELS: Registry[type] = Registry("model")
register_model = MODELS.register  # class decorator: available as `model.name = name`


register_model("mllm")(MLLM)


def build_model(model_config) -> nn.Module:
  """A validated config.model -> an (unbound) flax module of the registered `model.name`.

  The module holds a FrozenConfigDict copy: read-only, and hashable so that the module can be a
  static argument of `jax.jit` (as in `mmscale.eval.generate`).
  """
  frozen = ml_collections.FrozenConfigDict(model_config)
  return MODELS.get(frozen.name)(config=frozen)


def _value(cfg, path: str):
  """The value at dotted `path` of a model config, None where it is missing."""
  node = cfg
  for part in path.split("."):
    node = node.get(part) if hasattr(node, "get") else None
    if node is None:
      return None
  return node


def _require(cfg, path: str):
  value = _value(cfg, path)
  if value is None:
    raise ConfigError(f"model.{path}", "is required")
  return value


def _positive_ints(cfg, paths):
  for path in paths:
    value = _require(cfg, path)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
      raise ConfigError(f"model.{path}", f"must be a positive integer (got {value!r})")


def _check_dtype(cfg, name: str):
  value = _value(cfg, name)
  if value not in ("float32", "bfloat16", "float16"):
    raise ConfigError(f"model.{name}", f"must be 'float32', 'bfloat16' or 'float16' "
                      f"(got {value!r})")
  return jnp.dtype(value)


def validate_model_config(cfg) -> None:
  """Raises ConfigError('model.<field>', why) for the first inconsistent or missing field."""
  name = _require(cfg, "name")
  if name not in MODELS:
    raise ConfigError("model.name", f"unknown model {name!r}; known: {MODELS.names()}")
  _check_dtype(cfg, "dtype")
  _check_dtype(cfg, "param_dtype")
  _validate_attention(cfg)
  _validate_vit(cfg)
  _validate_connector(cfg)
  _validate_decoder(cfg)


def _validate_attention(cfg):
  """The kernel name; 'cudnn' only computes in 16-bit (cuDNN's flash attention has no float32).
  Whether the platform has the kernel is checked when the step is traced for it."""
  kernel = _require(cfg, "attention")
  if kernel not in KERNEL_NAMES:
    raise ConfigError("model.attention", f"unknown attention kernel {kernel!r}; known: "
                      f"{list(KERNEL_NAMES)}")
  if kernel == "cudnn" and jnp.dtype(_value(cfg, "dtype")) not in HALF_DTYPES:
    raise ConfigError("model.attention", f"'cudnn' computes in bfloat16 or float16; "
                      f"model.dtype is {_value(cfg, 'dtype')!r} (use 'auto' or 'xla')")


def _validate_vit(cfg):
  _positive_ints(cfg, [f"vit.{k}" for k in
                       ("image_size", "patch_size", "width", "depth", "heads", "mlp_dim")])
  v = cfg.vit
  if v.image_size % v.patch_size:
    raise ConfigError("model.vit.image_size", f"{v.image_size} is not divisible by "
                      f"model.vit.patch_size = {v.patch_size}")
  if v.width % v.heads:
    raise ConfigError("model.vit.heads", f"model.vit.width = {v.width} is not divisible by "
                      f"{v.heads} heads")
  posemb = _value(cfg, "vit.posemb")
  if posemb not in ("learned", "sincos2d"):
    raise ConfigError("model.vit.posemb", f"must be 'learned' or 'sincos2d' (got {posemb!r})")
  if posemb == "sincos2d" and v.width % 4:
    raise ConfigError("model.vit.width", f"sincos2d needs a multiple of 4 (got {v.width})")


def _validate_connector(cfg):
  name = _require(cfg, "connector.name")
  if name not in connector_names():
    raise ConfigError("model.connector.name",
                      f"unknown connector {name!r}; known: {connector_names()}")
  _positive_ints(cfg, ["connector.num_tokens"])
  if _require(cfg, "connector.hidden_dim"):  # 0 = the decoder width
    _positive_ints(cfg, ["connector.hidden_dim"])
  _positive_ints(cfg, ["connector.depth"])
  problem = get_connector(name).check(num_patches(cfg), cfg.connector.num_tokens)
  if problem:
    grid = math.isqrt(num_patches(cfg))
    raise ConfigError("model.connector.num_tokens",
                      f"{problem} (connector {name!r}, {grid}x{grid} patch grid)")


def _validate_decoder(cfg):
  _positive_ints(cfg, [f"decoder.{k}" for k in
                       ("vocab_size", "width", "depth", "heads", "kv_heads", "mlp_dim")])
  d = cfg.decoder
  if d.heads % d.kv_heads:
    raise ConfigError("model.decoder.kv_heads",
                      f"model.decoder.heads = {d.heads} is not divisible by {d.kv_heads}")
  if not _value(cfg, "decoder.head_dim") and d.width % d.heads:
    raise ConfigError("model.decoder.heads", f"model.decoder.width = {d.width} is not divisible "
                      f"by {d.heads} heads (or set model.decoder.head_dim)")
  if head_dim(cfg) % 2:
    raise ConfigError("model.decoder.head_dim", f"RoPE needs an even head dim (got "
                      f"{head_dim(cfg)})")
  policy = _value(cfg, "decoder.remat_policy")
  if policy not in REMAT_POLICIES:
    raise ConfigError("model.decoder.remat_policy",
                      f"unknown policy {policy!r}; known: {REMAT_POLICIES.names()}")
  scaling = _value(cfg, "decoder.rope_scaling.type")
  if scaling not in ROPE_SCALINGS:
    raise ConfigError("model.decoder.rope_scaling.type",
                      f"unknown RoPE scaling {scaling!r}; known: {ROPE_SCALINGS.names()}")
  if not _value(cfg, "decoder.norm_eps") > 0:
    raise ConfigError("model.decoder.norm_eps", f"must be > 0 (got {d.norm_eps})")
  rate = _value(cfg, "decoder.dropout_rate")
  if not 0.0 <= rate < 1.0:
    raise ConfigError("model.decoder.dropout_rate", f"must be in [0, 1) (got {rate})")
  _validate_moe(cfg)


def _validate_moe(cfg):
  d = cfg.decoder
  every = _value(cfg, "decoder.moe_every")
  if isinstance(every, bool) or not isinstance(every, int) or every < 0:
    raise ConfigError("model.decoder.moe_every", f"must be 0 (dense) or a positive integer "
                      f"(got {every!r})")
  if not every:
    return
  if d.depth % every:
    raise ConfigError("model.decoder.moe_every", f"model.decoder.depth = {d.depth} is not "
                      f"divisible by {every} (layers are scanned in groups of moe_every)")
  _positive_ints(cfg, ["decoder.num_experts", "decoder.experts_per_token"])
  if d.experts_per_token > d.num_experts:
    raise ConfigError("model.decoder.experts_per_token", f"{d.experts_per_token} is more than "
                      f"model.decoder.num_experts = {d.num_experts}")
  if d.moe_mlp_dim:
    _positive_ints(cfg, ["decoder.moe_mlp_dim"])
  if d.moe_dispatch not in DISPATCHES:
    raise ConfigError("model.decoder.moe_dispatch", f"unknown dispatch {d.moe_dispatch!r}; "
                      f"known: {DISPATCHES.names()}")
  if not d.capacity_factor > 0:
    raise ConfigError("model.decoder.capacity_factor", f"must be > 0 (got {d.capacity_factor})")
  for field in ("load_balance_loss", "router_z_loss"):
    if d[field] < 0:
      raise ConfigError(f"model.decoder.{field}", f"must be >= 0 (got {d[field]})")
