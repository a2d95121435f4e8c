"""Supported Hugging Face families: each maps its config.json onto mmscale's `config.model`.

A family is chosen by config.json's `model_type` from a registry (never an if-chain on names):
DECODER_FAMILIES for language models, VISION_FAMILIES for image encoders. A family's `fields`
returns the `config.model.decoder` (or `config.model.vit`) values that make mmscale's layers
compute exactly what the checkpoint's architecture computes; `check` rejects the settings mmscale
does not implement, naming them, instead of importing a model that would silently differ.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from mmscale.errors import ConfigError
from mmscale.registry import Registry


@dataclasses.dataclass(frozen=True)
class Family:
  """fields(hf_config) -> config.model.<part> values; unsupported: config keys -> the value
  mmscale needs them to have (a different value fails the import, naming the key)."""
  fields: Callable[[dict], dict]
  unsupported: tuple[tuple[str, object], ...] = ()


DECODER_FAMILIES: Registry[Family] = Registry("Hugging Face decoder family (model_type)")
VISION_FAMILIES: Registry[Family] = Registry("Hugging Face vision family (model_type)")


def _rope_parameters(hf: dict) -> dict:
  """config.json RoPE settings: `rope_parameters` (transformers >= 5) or the older top-level
  `rope_theta` + `rope_scaling`; one dict with 'rope_theta' and 'rope_type'."""
  params = dict(hf.get("rope_parameters") or {})
  old = hf.get("rope_scaling") or {}
  params.update({k: v for k, v in old.items() if k not in params})
  if "type" in params and "rope_type" not in params:
    params["rope_type"] = params["type"]
  params.setdefault("rope_theta", hf.get("rope_theta", 10_000.0))
  params.setdefault("rope_type", "default")
  return params


def _rope_fields(hf: dict) -> dict:
  rope = _rope_parameters(hf)
  kind = {"default": "none"}.get(rope["rope_type"], rope["rope_type"])
  scaling = dict(type=kind, factor=float(rope.get("factor", 1.0)),
                 low_freq_factor=float(rope.get("low_freq_factor", 1.0)),
                 high_freq_factor=float(rope.get("high_freq_factor", 4.0)),
                 original_max_position=int(rope.get("original_max_position_embeddings", 8192)))
  return dict(rope_theta=float(rope["rope_theta"]), rope_scaling=scaling)


def _llama_like(hf: dict, *, qkv_bias: bool, qk_norm: bool) -> dict:
  heads = hf["num_attention_heads"]
  return dict(
      vocab_size=hf["vocab_size"], width=hf["hidden_size"], depth=hf["num_hidden_layers"],
      heads=heads, kv_heads=hf.get("num_key_value_heads") or heads,
      head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
      mlp_dim=hf["intermediate_size"], tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
      norm_eps=float(hf["rms_norm_eps"]), qkv_bias=qkv_bias, qk_norm=qk_norm,
      scale_embeddings=False, **_rope_fields(hf))


_LLAMA_LIKE_UNSUPPORTED = (("hidden_act", "silu"), ("attention_bias", False), ("mlp_bias", False),
                           ("use_sliding_window", False), ("pretraining_tp", 1))

DECODER_FAMILIES.add("llama", Family(
    lambda hf: _llama_like(hf, qkv_bias=False, qk_norm=False), _LLAMA_LIKE_UNSUPPORTED))
DECODER_FAMILIES.add("qwen2", Family(
    lambda hf: _llama_like(hf, qkv_bias=True, qk_norm=False),
    tuple(u for u in _LLAMA_LIKE_UNSUPPORTED if u[0] != "attention_bias")))
DECODER_FAMILIES.add("qwen3", Family(
    lambda hf: _llama_like(hf, qkv_bias=False, qk_norm=True), _LLAMA_LIKE_UNSUPPORTED))


def decoder_family(hf_config: dict, field: str) -> Family:
  """The family of a decoder config.json; ConfigError naming `field` when it is unsupported."""
  return _family(DECODER_FAMILIES, hf_config, field)


def _family(families: Registry, hf_config: dict, field: str) -> Family:
  model_type = hf_config.get("model_type")
  if model_type not in families:
    raise ConfigError(field, f"config.json model_type {model_type!r} is not supported; "
                      f"supported: {families.names()}")
  family = families.get(model_type)
  for key, needed in family.unsupported:
    value = hf_config.get(key, needed)
    if value not in (needed, None):
      raise ConfigError(field, f"config.json {key}={value!r} is not supported for "
                        f"{model_type} (mmscale implements {key}={needed!r})")
  return family


def decoder_fields(hf_config: dict, field: str = "model.init_from.decoder") -> dict:
  """config.json of a decoder checkpoint -> the `config.model.decoder` values it needs."""
  return decoder_family(hf_config, field).fields(hf_config)
