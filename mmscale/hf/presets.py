"""Model configs from checkpoints: the family presets applied to `config.model`.

A config file for a pretrained start reads the checkpoints' config.json files once, at config
time, and sets `model.init_from` to the same directories:

    from mmscale.hf import presets
    presets.apply_decoder(c.model, "/ckpt/Qwen3-0.6B")    # decoder fields + init_from.decoder
    presets.apply_vision(c.model, "/ckpt/siglip-base-patch16-224")  # vit fields + init_from.vit
"""

from __future__ import annotations

import json
import os

from mmscale.errors import ConfigError
from mmscale.hf.checkpoint import read_preprocessor
from mmscale.hf.families import decoder_fields, vision_fields
from mmscale.hf.init_from import vision_depth


def read_hf_config(path: str, field: str) -> dict:
  """config.json of a checkpoint directory (ConfigError naming `field` if it has none)."""
  config_path = os.path.join(path, "config.json")
  if not os.path.isfile(config_path):
    raise ConfigError(field, f"no config.json in '{path}' (expected a Hugging Face checkpoint "
                      "directory: config.json + *.safetensors)")
  with open(config_path) as f:
    return json.load(f)


def apply_decoder(model_config, path: str) -> None:
  """Sets `model_config.decoder` to the checkpoint's architecture (its family's preset) and
  `model_config.init_from.decoder` to `path`. A LLaVA-style checkpoint's text part is used."""
  field = "model.init_from.decoder"
  hf = read_hf_config(path, field)
  fields = decoder_fields(hf.get("text_config", hf), field)
  scaling = fields.pop("rope_scaling")
  model_config.decoder.update(fields)
  model_config.decoder.rope_scaling.update(scaling)
  model_config.init_from.decoder = path


def apply_vision(model_config, path: str, final_norm: bool = False,
                 feature_layer: int | None = None) -> None:
  """Sets `model_config.vit` to the checkpoint's vision tower and `model_config.init_from.vit` to
  `path`. final_norm=False takes the features before the encoder's final LayerNorm (LLaVA's
  choice, and what a LLaVA-style export can express); True applies it (PaliGemma's).

  feature_layer: the encoder layer whose output the tower returns (transformers'
  `hidden_states[feature_layer]`: -1 the last, -2 the penultimate as LLaVA-1.5 takes from
  CLIP); None = a LLaVA-style checkpoint's `vision_feature_layer`, otherwise -1. The tower is
  built that deep (later layers are not loaded). A class token (CLIP) is always dropped from
  the features, as LLaVA's `vision_feature_select_strategy='default'` does."""
  field = "model.init_from.vit"
  top = read_hf_config(path, field)
  hf = top.get("vision_config", top) if "text_config" in top else top  # a LLaVA-style checkpoint
  fields = vision_fields(hf, read_preprocessor(path), field)
  if feature_layer is None:
    feature_layer = top.get("vision_feature_layer", -1) if "text_config" in top else -1
  if not isinstance(feature_layer, int) or not -fields["depth"] <= feature_layer < 0:
    raise ConfigError(field, f"vision feature layer {feature_layer!r} is not supported (one "
                      f"negative layer index in [-{fields['depth']}, -1])")
  strategy = top.get("vision_feature_select_strategy")
  wanted = "default" if fields["class_token"] else "full"
  if "text_config" in top and strategy not in (None, wanted):
    raise ConfigError(field, f"config.json vision_feature_select_strategy={strategy!r} is not "
                      f"supported with this tower (mmscale implements {wanted!r}: every patch "
                      "token, no class token)")
  fields["depth"] = vision_depth(fields["depth"], feature_layer)
  model_config.vit.update(fields, final_norm=final_norm)
  model_config.init_from.update(vit=path, vit_feature_layer=feature_layer)
