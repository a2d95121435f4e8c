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
from mmscale.hf.families import decoder_fields, vision_family


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


def apply_vision(model_config, path: str, final_norm: bool = False) -> None:
  """Sets `model_config.vit` to the checkpoint's vision tower and `model_config.init_from.vit` to
  `path`. final_norm=False takes the features before the encoder's final LayerNorm (LLaVA's
  choice, and what a LLaVA-style export can express); True applies it (PaliGemma's)."""
  field = "model.init_from.vit"
  hf = read_hf_config(path, field)
  hf = hf.get("vision_config", hf) if "text_config" in hf else hf  # a LLaVA-style checkpoint
  model_config.vit.update(vision_family(hf, field).fields(hf), final_norm=final_norm)
  model_config.init_from.vit = path
