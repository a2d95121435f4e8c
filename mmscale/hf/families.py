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
  `to_hf(decoder_config)` writes its config.json (the inverse of `fields`);
  `scales_embeddings`: the family multiplies embeddings by sqrt(width) itself (Gemma), so an
  export writes the table as is (for the others the factor is folded into the table)."""
  fields: Callable[[dict], dict]
  unsupported: tuple[tuple[str, object], ...] = ()
  exports: Callable[[object], bool] | None = None
  to_hf: Callable[[object], dict] | None = None
  scales_embeddings: bool = False


DECODER_FAMILIES: Registry[Family] = Registry("Hugging Face decoder family (model_type)")
VISION_FAMILIES: Registry[Family] = Registry("Hugging Face vision family (model_type)")

# Hugging Face activation names (`hidden_act`, `hidden_activation`) -> mmscale.models.layers
# ACTIVATIONS entries computing the same function.
HF_ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu_pytorch_tanh": "gelu_tanh",
                  "gelu_new": "gelu_tanh", "gelu": "gelu", "quick_gelu": "quick_gelu"}
MMSCALE_TO_HF_ACTIVATION = {"silu": "silu", "gelu_tanh": "gelu_pytorch_tanh", "gelu": "gelu",
                            "quick_gelu": "quick_gelu"}


def _activation(hf: dict, keys: tuple[str, ...], default: str) -> str:
  """The first of `keys` present in config.json (else transformers' `default` for the family),
  as an mmscale activation name."""
  name = next((hf[k] for k in keys if hf.get(k)), default)
  if name not in HF_ACTIVATIONS:
    raise ConfigError(f"config.json {keys[0]}={name!r} is not supported (mmscale implements "
                      f"{sorted(HF_ACTIVATIONS)})")
  return HF_ACTIVATIONS[name]


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


def _rope_scaling_to_hf(s) -> dict:
  """mmscale's rope_scaling -> the classic `rope_scaling` entry every transformers reads."""
  if s.type == "linear":
    return dict(rope_type=s.type, factor=s.factor)
  return dict(rope_type=s.type, factor=s.factor, low_freq_factor=s.low_freq_factor,
              high_freq_factor=s.high_freq_factor,
              original_max_position_embeddings=s.original_max_position)


def _common_to_hf(d, model_type: str, architecture: str) -> dict:
  return dict(
      model_type=model_type, architectures=[architecture], vocab_size=d.vocab_size,
      hidden_size=d.width, intermediate_size=d.mlp_dim, num_hidden_layers=d.depth,
      num_attention_heads=d.heads, num_key_value_heads=d.kv_heads,
      head_dim=d.head_dim or d.width // d.heads, rms_norm_eps=d.norm_eps,
      tie_word_embeddings=d.tie_embeddings, attention_bias=False, rope_theta=d.rope_theta,
      max_position_embeddings=max(32768, d.rope_scaling.original_max_position))


def _llama_like_to_hf(model_type: str, architecture: str):
  def to_hf(d) -> dict:
    out = dict(_common_to_hf(d, model_type, architecture), hidden_act="silu")
    if d.rope_scaling.type != "none":
      out["rope_scaling"] = _rope_scaling_to_hf(d.rope_scaling)
    return out
  return to_hf


def _plain(d) -> bool:
  """Whether a decoder uses none of Gemma's variants (what Llama / Qwen checkpoints express)."""
  return (not d.norm_scale_plus_one and not d.post_norms and d.mlp_activation == "silu"
          and not d.attn_logit_softcap and not d.final_logit_softcap and not d.sliding_window
          and d.query_pre_attn_scalar in (0, d.head_dim or d.width // d.heads))


_LLAMA_LIKE_UNSUPPORTED = (("hidden_act", "silu"), ("attention_bias", False), ("mlp_bias", False),
                           ("use_sliding_window", False), ("pretraining_tp", 1))

DECODER_FAMILIES.add("llama", Family(
    lambda hf: _llama_like(hf, qkv_bias=False, qk_norm=False), _LLAMA_LIKE_UNSUPPORTED,
    exports=lambda d: _plain(d) and not d.qkv_bias and not d.qk_norm,
    to_hf=_llama_like_to_hf("llama", "LlamaForCausalLM")))
DECODER_FAMILIES.add("qwen2", Family(
    lambda hf: _llama_like(hf, qkv_bias=True, qk_norm=False),
    tuple(u for u in _LLAMA_LIKE_UNSUPPORTED if u[0] != "attention_bias"),
    exports=lambda d: _plain(d) and d.qkv_bias and not d.qk_norm,
    to_hf=_llama_like_to_hf("qwen2", "Qwen2ForCausalLM")))
DECODER_FAMILIES.add("qwen3", Family(
    lambda hf: _llama_like(hf, qkv_bias=False, qk_norm=True), _LLAMA_LIKE_UNSUPPORTED,
    exports=lambda d: _plain(d) and d.qk_norm and not d.qkv_bias,
    to_hf=_llama_like_to_hf("qwen3", "Qwen3ForCausalLM")))


# Gemma 2 / 3 text decoders. Both: embeddings x sqrt(width), RMSNorm x (1 + scale), RMSNorm
# after attention and MLP too, GeGLU (tanh GELU), scores x query_pre_attn_scalar^-0.5, and
# sliding-window layers alternating with global ones (`layer_types`). Gemma 2: tanh
# soft-capping of attention scores and final logits, one RoPE. Gemma 3: q/k RMSNorm, no
# soft-capping, RoPE per layer type (local: plain, base 10k; global: base 1M, often `linear`).
SLIDING, FULL = "sliding_attention", "full_attention"


def _global_every(hf: dict, default_pattern: int) -> tuple[int, int]:
  """(sliding_window, global_every) from config.json's `layer_types` (or the older
  `sliding_window_pattern`): the last of each global_every layers is global."""
  depth, window = hf["num_hidden_layers"], hf.get("sliding_window", 4096) or 0
  types = hf.get("layer_types") or [
      SLIDING if (i + 1) % hf.get("sliding_window_pattern", default_pattern) else FULL
      for i in range(depth)]
  if window == 0 or SLIDING not in types:
    if SLIDING in types:
      raise ConfigError("config.json has sliding-window layers but no sliding_window")
    return 0, 0
  every = types.index(FULL) + 1 if FULL in types else 0
  want = [SLIDING if not every or (i + 1) % every else FULL for i in range(depth)]
  if list(types) != want:
    raise ConfigError(f"config.json layer_types={types} is not supported (mmscale implements "
                      "'the last of every N layers global')")
  return int(window), every


def _softcap(hf: dict, key: str, default: float | None = None) -> float:
  return float(hf.get(key, default) or 0.0)


def _gemma_common(hf: dict, default_pattern: int) -> dict:
  heads = hf["num_attention_heads"]
  head_dim = hf.get("head_dim") or hf["hidden_size"] // heads
  window, every = _global_every(hf, default_pattern)
  return dict(
      vocab_size=hf["vocab_size"], width=hf["hidden_size"], depth=hf["num_hidden_layers"],
      heads=heads, kv_heads=hf.get("num_key_value_heads") or heads, head_dim=head_dim,
      mlp_dim=hf["intermediate_size"], tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
      norm_eps=float(hf.get("rms_norm_eps", 1e-6)), qkv_bias=False, scale_embeddings=True,
      norm_scale_plus_one=True, post_norms=True,
      mlp_activation=_activation(hf, ("hidden_activation", "hidden_act"), "gelu_pytorch_tanh"),
      query_pre_attn_scalar=float(hf.get("query_pre_attn_scalar", 256)),
      sliding_window=window, global_every=every)


def _gemma2(hf: dict) -> dict:
  return dict(_gemma_common(hf, 2), qk_norm=False, rope_local_theta=0.0,
              attn_logit_softcap=_softcap(hf, "attn_logit_softcapping", 50.0),
              final_logit_softcap=_softcap(hf, "final_logit_softcapping", 30.0),
              **_rope_fields(hf))


def _gemma3_ropes(hf: dict) -> tuple[dict, dict]:
  """(global layers' rope parameters, sliding layers') from config.json: transformers 5's
  `rope_parameters` per layer type, or the older `rope_theta` + `rope_scaling` (global) and
  `rope_local_base_freq` (sliding)."""
  params = hf.get("rope_parameters") or {}
  if FULL in params or SLIDING in params:
    full, local = dict(params.get(FULL) or {}), dict(params.get(SLIDING) or {})
  else:
    full = _rope_parameters(dict(hf, rope_theta=hf.get("rope_theta", 1_000_000.0)))
    local = {"rope_theta": hf.get("rope_local_base_freq", 10_000.0)}
  full.setdefault("rope_theta", 1_000_000.0)
  full.setdefault("rope_type", full.get("type", "default"))
  local.setdefault("rope_theta", 10_000.0)
  if local.get("rope_type", local.get("type", "default")) != "default":
    raise ConfigError(f"config.json rope_parameters.sliding_attention rope_type="
                      f"{local.get('rope_type')!r} is not supported (mmscale implements "
                      "'default' for sliding-window layers)")
  return full, local


def _gemma3(hf: dict) -> dict:
  full, local = _gemma3_ropes(hf)
  fields = dict(_gemma_common(hf, 6), qk_norm=True, attn_logit_softcap=0.0,
                final_logit_softcap=_softcap(hf, "final_logit_softcapping"),
                **_rope_fields({"rope_parameters": full}))
  fields["rope_local_theta"] = float(local["rope_theta"]) if fields["sliding_window"] else 0.0
  return fields


def _gemma_exports(d, version: int) -> bool:
  gemma = (d.norm_scale_plus_one and d.post_norms and d.mlp_activation == "gelu_tanh"
           and d.scale_embeddings and not d.qkv_bias)
  if version == 2:
    return gemma and not d.qk_norm and not d.rope_local_theta
  return gemma and d.qk_norm and not d.attn_logit_softcap


def _layer_types(d) -> list[str]:
  every = d.global_every
  return [SLIDING if d.sliding_window and (not every or (i + 1) % every) else FULL
          for i in range(d.depth)]


def _int_if_whole(x: float):
  """transformers' strict configs type query_pre_attn_scalar as an int."""
  return int(x) if float(x).is_integer() else x


def _gemma_to_hf(d, model_type: str, architecture: str) -> dict:
  out = dict(_common_to_hf(d, model_type, architecture),
             hidden_activation=MMSCALE_TO_HF_ACTIVATION[d.mlp_activation],
             query_pre_attn_scalar=_int_if_whole(
                 d.query_pre_attn_scalar or d.head_dim or d.width // d.heads),
             sliding_window=d.sliding_window or None, layer_types=_layer_types(d),
             final_logit_softcapping=d.final_logit_softcap or None,
             attn_logit_softcapping=d.attn_logit_softcap or None)
  if d.rope_scaling.type != "none":
    out["rope_scaling"] = _rope_scaling_to_hf(d.rope_scaling)
  return out


def _gemma3_to_hf(d) -> dict:
  out = _gemma_to_hf(d, "gemma3_text", "Gemma3ForCausalLM")
  out["rope_local_base_freq"] = d.rope_local_theta or d.rope_theta
  if d.sliding_window and not d.rope_local_theta and d.rope_scaling.type != "none":
    raise ConfigError("model.decoder.rope_local_theta", "Gemma 3's sliding-window layers use "
                      "plain RoPE; set rope_local_theta (its RoPE base) to export")
  return out


_GEMMA_UNSUPPORTED = (("attention_bias", False), ("use_bidirectional_attention", False))
DECODER_FAMILIES.add("gemma2", Family(
    _gemma2, _GEMMA_UNSUPPORTED, exports=lambda d: _gemma_exports(d, 2),
    to_hf=lambda d: _gemma_to_hf(d, "gemma2", "Gemma2ForCausalLM"), scales_embeddings=True))
# Gemma 3's text model; `gemma3` (the image-text checkpoint) gives its `text_config`.
DECODER_FAMILIES.add("gemma3_text", Family(
    _gemma3, _GEMMA_UNSUPPORTED + (("attn_logit_softcapping", None),),
    exports=lambda d: _gemma_exports(d, 3), to_hf=_gemma3_to_hf, scales_embeddings=True))


def _vit_common(v: dict, activation: str, norm_eps: float) -> dict:
  """The tower's sizes; `activation` / `norm_eps`: transformers' defaults for the family."""
  return dict(image_size=v["image_size"], patch_size=v["patch_size"], width=v["hidden_size"],
              depth=v["num_hidden_layers"], heads=v["num_attention_heads"],
              mlp_dim=v["intermediate_size"], posemb="learned",
              activation=_activation(v, ("hidden_act",), activation),
              norm_eps=float(v.get("layer_norm_eps", norm_eps)))


# The image normalisations (on [0, 1] pixels) the towers were trained with; a checkpoint's
# preprocessor_config.json, when present, overrides them (`vision_fields`).
SIGLIP_PIXELS = dict(pixel_mean=(0.5, 0.5, 0.5), pixel_std=(0.5, 0.5, 0.5))
OPENAI_CLIP_PIXELS = dict(pixel_mean=(0.48145466, 0.4578275, 0.40821073),
                          pixel_std=(0.26862954, 0.26130258, 0.27577711))


def _siglip(hf: dict) -> dict:
  return dict(_vit_common(hf.get("vision_config", hf), "gelu_pytorch_tanh", 1e-6),
              class_token=False, pre_norm=False, patch_bias=True, **SIGLIP_PIXELS)


def _clip(hf: dict) -> dict:
  """CLIP ViT (OpenAI's, e.g. clip-vit-large-patch14-336 in LLaVA-1.5): class token, LayerNorm
  before the blocks (`pre_layrnorm`), no patch bias, quick-GELU, LayerNorm epsilon 1e-5, and
  OpenAI's pixel mean / std."""
  return dict(_vit_common(hf.get("vision_config", hf), "quick_gelu", 1e-5),
              class_token=True, pre_norm=True, patch_bias=False, **OPENAI_CLIP_PIXELS)


# SigLIP and the fixed-resolution SigLIP 2 checkpoints (their config.json says 'siglip'); CLIP.
# Each as a whole image-text model ('siglip', 'clip') or its vision tower alone ('*_vision_model').
_VIT_UNSUPPORTED = (("num_channels", 3),)
VISION_FAMILIES.add("siglip", Family(_siglip, _VIT_UNSUPPORTED))
VISION_FAMILIES.add("siglip_vision_model", Family(_siglip, _VIT_UNSUPPORTED))
VISION_FAMILIES.add("clip", Family(_clip, _VIT_UNSUPPORTED))
VISION_FAMILIES.add("clip_vision_model", Family(_clip, _VIT_UNSUPPORTED))
# an image-text checkpoint's model_type -> its vision_config's (when the sub-config omits it)
VISION_SUBCONFIG_TYPES = {"siglip": "siglip_vision_model", "clip": "clip_vision_model"}


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
  try:  # the settings `fields` reads (activation, layer pattern, RoPE per layer type)
    family.fields(hf_config)
  except ConfigError as e:
    raise ConfigError(field, f"{e.message} ({model_type})") from None
  return family


def vision_family(hf_config: dict, field: str) -> Family:
  """The family of a vision encoder config.json (its `vision_config` checked too)."""
  family = _family(VISION_FAMILIES, hf_config, field)
  if "vision_config" in hf_config:
    sub = dict(hf_config["vision_config"])
    sub.setdefault("model_type", VISION_SUBCONFIG_TYPES.get(hf_config.get("model_type")))
    _family(VISION_FAMILIES, sub, field)
  return family


def vision_fields(hf_config: dict, preprocessor: dict | None, field: str) -> dict:
  """config.json (+ preprocessor_config.json, if the checkpoint has one: its image_mean /
  image_std) of a vision checkpoint -> the `config.model.vit` values it needs."""
  fields = vision_family(hf_config, field).fields(hf_config)
  for ours, theirs in (("pixel_mean", "image_mean"), ("pixel_std", "image_std")):
    value = (preprocessor or {}).get(theirs)
    if value is not None:
      value = [value] * 3 if isinstance(value, (int, float)) else value
      fields[ours] = tuple(float(x) for x in value)
  return fields


def export_family(decoder_config) -> Family:
  """The family that expresses an mmscale decoder (ConfigError naming the fields otherwise)."""
  for name in DECODER_FAMILIES:
    family = DECODER_FAMILIES.get(name)
    if family.exports is not None and family.exports(decoder_config):
      return family
  raise ConfigError("model.decoder", "this combination of decoder variants (qkv_bias, qk_norm, "
                    "the Gemma settings) matches no exportable family "
                    f"({DECODER_FAMILIES.names()})")


def decoder_fields(hf_config: dict, field: str = "model.init_from.decoder") -> dict:
  """config.json of a decoder checkpoint -> the `config.model.decoder` values it needs."""
  return decoder_family(hf_config, field).fields(hf_config)
