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
  mmscale needs them to have (a different value fails the import, naming the key).
  Export (decoders): `exports(decoder_config)` says whether this family expresses that decoder,
  `to_hf(decoder_config)` writes its config.json (the inverse of `fields`)."""
  fields: Callable[[dict], dict]
  unsupported: tuple[tuple[str, object], ...] = ()
  exports: Callable[[object], bool] | None = None
  to_hf: Callable[[object], dict] | None = None


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


def _llama_like_to_hf(model_type: str, architecture: str):
  def to_hf(d) -> dict:
    s = d.rope_scaling
    out = dict(
        model_type=model_type, architectures=[architecture], vocab_size=d.vocab_size,
        hidden_size=d.width, intermediate_size=d.mlp_dim, num_hidden_layers=d.depth,
        num_attention_heads=d.heads, num_key_value_heads=d.kv_heads,
        head_dim=d.head_dim or d.width // d.heads, rms_norm_eps=d.norm_eps,
        tie_word_embeddings=d.tie_embeddings, hidden_act="silu", attention_bias=False,
        rope_theta=d.rope_theta, max_position_embeddings=max(32768, s.original_max_position))
    if s.type != "none":  # the classic `rope_scaling` entry every transformers version reads
      out["rope_scaling"] = dict(rope_type=s.type, factor=s.factor,
                                 low_freq_factor=s.low_freq_factor,
                                 high_freq_factor=s.high_freq_factor,
                                 original_max_position_embeddings=s.original_max_position)
    return out
  return to_hf


_LLAMA_LIKE_UNSUPPORTED = (("hidden_act", "silu"), ("attention_bias", False), ("mlp_bias", False),
                           ("use_sliding_window", False), ("pretraining_tp", 1))

DECODER_FAMILIES.add("llama", Family(
    lambda hf: _llama_like(hf, qkv_bias=False, qk_norm=False), _LLAMA_LIKE_UNSUPPORTED,
    exports=lambda d: not d.qkv_bias and not d.qk_norm,
    to_hf=_llama_like_to_hf("llama", "LlamaForCausalLM")))
DECODER_FAMILIES.add("qwen2", Family(
    lambda hf: _llama_like(hf, qkv_bias=True, qk_norm=False),
    tuple(u for u in _LLAMA_LIKE_UNSUPPORTED if u[0] != "attention_bias"),
    exports=lambda d: d.qkv_bias and not d.qk_norm,
    to_hf=_llama_like_to_hf("qwen2", "Qwen2ForCausalLM")))
DECODER_FAMILIES.add("qwen3", Family(
    lambda hf: _llama_like(hf, qkv_bias=False, qk_norm=True), _LLAMA_LIKE_UNSUPPORTED,
    exports=lambda d: d.qk_norm and not d.qkv_bias,
    to_hf=_llama_like_to_hf("qwen3", "Qwen3ForCausalLM")))


def _siglip(hf: dict) -> dict:
  v = hf.get("vision_config", hf)
  return dict(image_size=v["image_size"], patch_size=v["patch_size"], width=v["hidden_size"],
              depth=v["num_hidden_layers"], heads=v["num_attention_heads"],
              mlp_dim=v["intermediate_size"], posemb="learned")


# SigLIP and the fixed-resolution SigLIP 2 checkpoints (their config.json says 'siglip'); as a
# whole image-text model ('siglip') or its vision tower alone ('siglip_vision_model').
_SIGLIP_UNSUPPORTED = (("hidden_act", "gelu_pytorch_tanh"), ("layer_norm_eps", 1e-6),
                       ("num_channels", 3))
VISION_FAMILIES.add("siglip", Family(_siglip, _SIGLIP_UNSUPPORTED))
VISION_FAMILIES.add("siglip_vision_model", Family(_siglip, _SIGLIP_UNSUPPORTED))


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


def vision_family(hf_config: dict, field: str) -> Family:
  """The family of a vision encoder config.json (its `vision_config` checked too)."""
  family = _family(VISION_FAMILIES, hf_config, field)
  if "vision_config" in hf_config:
    _family(VISION_FAMILIES, dict(hf_config["vision_config"], model_type="siglip_vision_model"),
            field)
  return family


def export_family(decoder_config) -> Family:
  """The family that expresses an mmscale decoder (ConfigError naming the fields otherwise)."""
  for name in DECODER_FAMILIES:
    family = DECODER_FAMILIES.get(name)
    if family.exports is not None and family.exports(decoder_config):
      return family
  raise ConfigError("model.decoder.qkv_bias", "q/k/v biases with q/k norm match no supported "
                    f"family ({DECODER_FAMILIES.names()})")


def decoder_fields(hf_config: dict, field: str = "model.init_from.decoder") -> dict:
  """config.json of a decoder checkpoint -> the `config.model.decoder` values it needs."""
  return decoder_family(hf_config, field).fields(hf_config)
