"""An mmscale model as a Hugging Face checkpoint: a LLaVA-style image-text model
(`LlavaForConditionalGeneration`: SigLIP or CLIP vision tower + projector + decoder) or the
decoder alone as a text model (`LlamaForCausalLM`, `Qwen2ForCausalLM`, `Qwen3ForCausalLM`, `Gemma2ForCausalLM`
or `Gemma3ForCausalLM`).

The same tensor tables as the import (mmscale/hf/mapping.py) are used in reverse, so an export
re-imports exactly. Tensor names are the Hugging Face hub's (`language_model.model.*`,
`vision_tower.vision_model.*`, `multi_modal_projector.*`), which transformers 4.x and 5.x load.
What mmscale computes and a LLaVA model cannot express fails naming the config field:
  - model.decoder.causal_only must be true (LLaVA attends causally over image tokens too);
  - model.vit.final_norm false and posemb 'learned' (LLaVA takes SigLIP's pre-norm features);
  - the 'mlp' connector with hidden_dim = the decoder width (LLaVA's two-layer projector);
  - tied embeddings with scale_embeddings (the sqrt(width) factor is folded into an untied
    embedding table, but a tied table also makes the logits), except for Gemma, which scales;
  - a SigLIP-style tower (no class token, no pre-norm, a patch bias) or a CLIP-style one;
  - no final logit soft-capping (LLaVA's head does not cap; the text export does).
Every process takes part (params are gathered); process 0 writes. The whole model passes
through process 0's memory once, in float32, in one `model.safetensors`. The output directory may
be local or in a bucket (`gs://...`): safetensors writes a local file, which is then copied.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
from jax.experimental import multihost_utils
from safetensors.numpy import save_file

from mmscale import paths
from mmscale.errors import ConfigError
from mmscale.hf.families import MMSCALE_TO_HF_ACTIVATION, export_family
from mmscale.hf.mapping import Tensor, connector_tensors, decoder_tensors, vision_tensors


def _host(x) -> np.ndarray:
  return np.asarray(multihost_utils.process_allgather(x, tiled=True), np.float32)


def _at(params, path):
  for key in path:
    params = params[key]
  return params


def _gather(params: dict, placed: list[tuple[tuple[str, ...], Tensor, str]]) -> dict:
  """[(mmscale path, tensor, checkpoint name)] -> {checkpoint name: float32 array, hf layout}."""
  return {name: tensor.to_hf(_host(_at(params, path))) for path, tensor, name in placed}


def _decoder_tensors(d, params, prefix, lm_head) -> dict:
  """{checkpoint name: array} of the decoder; a scanned stack is gathered once per parameter."""
  top, per_layer = decoder_tensors(d, prefix, lm_head)
  out = _gather(params, [(t.path, t, t.hf_name) for t in top])
  for t in per_layer:
    if d.scan_layers:
      stacked = _host(_at(params, ("layers",) + t.path))
      out.update({t.hf_name.format(i=i): t.to_hf(stacked[i]) for i in range(d.depth)})
    else:
      out.update(_gather(params, [((f"layers_{i}",) + t.path, t, t.hf_name.format(i=i))
                                  for i in range(d.depth)]))
  if d.scale_embeddings and not export_family(d).scales_embeddings:  # fold the factor in
    out[f"{prefix}embed_tokens.weight"] = out[f"{prefix}embed_tokens.weight"] * d.width ** 0.5
  return out


def _check_decoder(d):
  family = export_family(d)
  if d.scale_embeddings and d.tie_embeddings and not family.scales_embeddings:
    raise ConfigError("model.decoder.scale_embeddings", "a tied embedding table scaled by "
                      "sqrt(width) has no Hugging Face equivalent (train with "
                      "scale_embeddings=false or tie_embeddings=false to export)")
  return family


def text_config(model_config, special_ids: dict | None = None) -> dict:
  """config.json of the decoder as a *ForCausalLM (special_ids: bos/eos/pad_token_id)."""
  out = _check_decoder(model_config.decoder).to_hf(model_config.decoder)
  out.update(special_ids or {})
  return out


def _write(out_dir: str, config: dict, tensors: dict, extra_files: dict | None = None) -> None:
  if jax.process_index() != 0:
    return
  with paths.local_dir(out_dir) as local:  # safetensors writes local files only
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()},
              os.path.join(local, "model.safetensors"), metadata={"format": "pt"})
    for name, content in {"config.json": config, **(extra_files or {})}.items():
      with open(os.path.join(local, name), "w") as f:
        json.dump(content, f, indent=2)


def export_text(model_config, params: dict, out_dir: str, special_ids: dict | None = None):
  """The decoder alone -> `out_dir` as a Llama / Qwen2 / Qwen3 / Gemma 2 / Gemma 3
  *ForCausalLM checkpoint."""
  config = text_config(model_config, special_ids)
  tensors = _decoder_tensors(model_config.decoder, params["decoder"], "model.", "lm_head.weight")
  _write(out_dir, config, tensors)
  return config


# The two tower styles a LLaVA checkpoint can hold: (class_token, pre_norm, patch_bias) each.
_TOWER_STYLES = {(False, False, True): "siglip_vision_model", (True, True, False): "clip_vision_model"}


def vision_config(model_config) -> dict:
  """config.json of the tower: a SigLIP one, or a CLIP one for a class-token tower (whose class
  token LLaVA then drops: vision_feature_select_strategy 'default')."""
  v = model_config.vit
  if v.final_norm or v.posemb != "learned":
    field = "model.vit.final_norm" if v.final_norm else "model.vit.posemb"
    raise ConfigError(field, "a LLaVA export takes the vision tower's features before its final "
                      "norm, with learned position embeddings (final_norm=false, "
                      "posemb='learned')")
  model_type = _TOWER_STYLES.get((v.class_token, v.pre_norm, v.patch_bias))
  if model_type is None:
    raise ConfigError("model.vit.class_token", "a LLaVA export writes a SigLIP tower (no class "
                      "token, no pre-norm, a patch bias) or a CLIP one (class token, pre-norm, "
                      f"no patch bias); got class_token={v.class_token}, pre_norm={v.pre_norm}, "
                      f"patch_bias={v.patch_bias}")
  out = dict(model_type=model_type, hidden_size=v.width, intermediate_size=v.mlp_dim,
             num_hidden_layers=v.depth, num_attention_heads=v.heads, image_size=v.image_size,
             patch_size=v.patch_size, num_channels=3,
             hidden_act=MMSCALE_TO_HF_ACTIVATION[v.activation], layer_norm_eps=v.norm_eps)
  if model_type == "siglip_vision_model":
    out["vision_use_head"] = False
  return out


def _image_processor(v) -> dict:
  """preprocessor_config.json: images stretched to the square size (bilinear, mmscale's
  data.resize=stretch) and normalised with the tower's pixel_mean / pixel_std."""
  out = dict(do_resize=True, size=dict(height=v.image_size, width=v.image_size), resample=2,
             do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
             image_mean=list(v.pixel_mean), image_std=list(v.pixel_std))
  if v.class_token:  # CLIP's processor would resize the short side and centre-crop
    return dict(out, image_processor_type="CLIPImageProcessor", do_center_crop=False,
                do_convert_rgb=True)
  return dict(out, image_processor_type="SiglipImageProcessor")


def _select_strategy(v) -> str:
  """LLaVA's 'default' drops the first token (CLIP's class token), 'full' keeps every one."""
  return "default" if v.class_token else "full"


def llava_config(model_config, image_token_id: int, special_ids: dict | None = None) -> dict:
  """config.json of the whole model as a LlavaForConditionalGeneration."""
  c, d = model_config.connector, model_config.decoder
  if not d.causal_only:
    raise ConfigError("model.decoder.causal_only", "a LLaVA export attends causally over image "
                      "tokens and prompts; train with causal_only=true to export exactly")
  if d.final_logit_softcap:
    raise ConfigError("model.decoder.final_logit_softcap", "LlavaForConditionalGeneration "
                      "computes its own logits without soft-capping; export the decoder alone "
                      "(--format=text) or train with final_logit_softcap=0")
  if c.name != "mlp" or (c.hidden_dim or d.width) != d.width:
    raise ConfigError("model.connector.hidden_dim" if c.name == "mlp" else "model.connector.name",
                      "a LLaVA projector is the 'mlp' connector with hidden_dim = the decoder "
                      f"width {d.width} (got {c.name!r}, hidden_dim {c.hidden_dim})")
  grid = model_config.vit.image_size // model_config.vit.patch_size
  return dict(
      model_type="llava", architectures=["LlavaForConditionalGeneration"],
      text_config=text_config(model_config, special_ids), vision_config=vision_config(model_config),
      image_token_index=image_token_id, image_seq_length=grid * grid,
      projector_hidden_act="gelu_pytorch_tanh", vision_feature_layer=-1,
      vision_feature_select_strategy=_select_strategy(model_config.vit),
      multimodal_projector_bias=True,
      tie_word_embeddings=d.tie_embeddings, **(special_ids or {}))


def export_llava(model_config, params: dict, out_dir: str, image_token_id: int,
                 special_ids: dict | None = None, image_token: str | None = None) -> dict:
  """The whole model -> `out_dir` as a LLaVA-style checkpoint (+ preprocessor_config.json for
  the tower's image processor, SigLIP's or CLIP's: pixels normalised with the tower's
  `pixel_mean` / `pixel_std`, by default to [-1, 1] as mmscale's pipeline does). With
  `image_token` (the tokenizer's placeholder text) also processor_config.json, so that
  `AutoProcessor` builds a LlavaProcessor that expands one placeholder into the image's tokens."""
  config = llava_config(model_config, image_token_id, special_ids)
  v = model_config.vit
  tensors = _decoder_tensors(model_config.decoder, params["decoder"], "language_model.model.",
                             "language_model.lm_head.weight")
  top, per_layer = vision_tensors(v, "vision_tower.vision_model.")
  placed = [(t.path, t, t.hf_name) for t in top]
  placed += [((f"block_{i}",) + t.path, t, t.hf_name.format(i=i))
             for i in range(v.depth) for t in per_layer]
  tensors.update(_gather(params["vit"], placed))
  tensors.update(_gather(params["connector"],
                         [(t.path, t, t.hf_name) for t in connector_tensors()]))
  # LLaVA never reads the tower's post_layernorm; written as the identity so nothing is missing
  tensors["vision_tower.vision_model.post_layernorm.weight"] = np.ones(v.width, np.float32)
  tensors["vision_tower.vision_model.post_layernorm.bias"] = np.zeros(v.width, np.float32)
  extra = {"preprocessor_config.json": _image_processor(v)}
  if image_token is not None:
    extra["processor_config.json"] = dict(
        processor_class="LlavaProcessor", image_token=image_token, patch_size=v.patch_size,
        vision_feature_select_strategy=_select_strategy(v),
        num_additional_image_tokens=int(v.class_token))
  _write(out_dir, config, tensors, extra)
  return config
