"""Decoder import: tiny random Llama 3 / Qwen2 / Qwen3 / Gemma 2 / Gemma 3 models built with
transformers (no download), saved as safetensors, imported into sharded mmscale params; logits
must match to 1e-4 in float32. Plus: every mismatch fails naming the tensor.

The Gemma configs use a sliding window of 4 on 12-token prompts (so the window cuts), one local
and one global layer, and settings chosen so each variant moves the logits by well over 1e-4
(query_pre_attn_scalar 1 makes the scores large enough for a 0.1 soft-cap to bite)."""

import json
import os

import jax
import numpy as np
import pytest
from flax import linen as nn

from mmscale.errors import CheckpointError, ConfigError
from mmscale.hf import export, presets
from mmscale.hf.init_from import apply_init_from
from mmscale.testing import tiny_model_config
from tests.hf_helpers import (TINY_TEXT, mesh_and_rules, run_config, save_random,
                              sharded_random_params, text_batch)

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

def _eager(config):
  config._attn_implementation = "eager"  # pylint: disable=protected-access
  return config


FAMILIES = {
    "llama3": lambda: transformers.LlamaConfig(
        **TINY_TEXT, rms_norm_eps=1e-5, tie_word_embeddings=False,
        rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0,
                             low_freq_factor=1.0, high_freq_factor=4.0,
                             original_max_position_embeddings=16)),
    "qwen2": lambda: transformers.Qwen2Config(**TINY_TEXT, rms_norm_eps=1e-6,
                                              tie_word_embeddings=True),
    "qwen3": lambda: transformers.Qwen3Config(**TINY_TEXT, head_dim=16, rms_norm_eps=1e-6,
                                              tie_word_embeddings=False),
    "gemma2": lambda: _eager(transformers.Gemma2Config(
        **TINY_TEXT, head_dim=16, query_pre_attn_scalar=1, sliding_window=4,
        attn_logit_softcapping=0.1, final_logit_softcapping=3.0, tie_word_embeddings=False)),
    "gemma3": lambda: _eager(transformers.Gemma3TextConfig(
        **TINY_TEXT, head_dim=16, query_pre_attn_scalar=24, sliding_window=4,
        layer_types=["sliding_attention", "full_attention"],
        rope_parameters={"full_attention": dict(rope_type="linear", factor=8.0, rope_theta=1e6),
                         "sliding_attention": dict(rope_type="default", rope_theta=1e4)})),
}


def _import(path, scan_layers=True, mesh_shape=None, with_config=False):
  model_config = tiny_model_config()
  presets.apply_decoder(model_config, path)
  model_config.decoder.scan_layers = scan_layers
  config = run_config(model_config, mesh_shape)
  mesh, rules = mesh_and_rules(config)
  batch = text_batch(model_config.decoder.vocab_size)
  model, params = sharded_random_params(model_config, mesh, rules, batch)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    params = apply_init_from(model_config, params)
    logits = model.apply({"params": params}, batch)
  if with_config:
    return params, np.asarray(logits), batch, model_config
  return params, np.asarray(logits), batch


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_decoder_logit_parity(family, tmp_path):
  """Import parity, then the text export of the imported params loads back in transformers as
  the same family and computes the same logits (the config.json round trip, RoPE variant too)."""
  hf_config = FAMILIES[family]()
  hf_model = save_random(transformers.AutoModelForCausalLM.from_config, hf_config, tmp_path)
  params, logits, batch, model_config = _import(
      str(tmp_path), mesh_shape={"data": 2, "fsdp": 2, "tensor": 2}, with_config=True)
  with torch.no_grad():
    ref = hf_model(torch.from_numpy(batch["tokens"]).long()).logits.float().numpy()
  assert logits.shape == ref.shape
  np.testing.assert_allclose(logits, ref, atol=1e-4, rtol=0)
  kernel = params["decoder"]["layers"]["attn"]["query"]["kernel"]
  assert len(kernel.sharding.device_set) == 8  # placed in the run's shardings

  export.export_text(model_config, params, str(tmp_path / "export"))
  again = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "export")).eval()
  assert type(again) is type(hf_model)
  with torch.no_grad():
    np.testing.assert_allclose(
        again(torch.from_numpy(batch["tokens"]).long()).logits.numpy(), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["qwen3", "gemma3"])
def test_unscanned_decoder_imports_the_same(family, tmp_path):
  """Unscanned layers (Gemma 3: each layer gets its own sliding-window flag, not a scanned one)."""
  hf_model = save_random(transformers.AutoModelForCausalLM.from_config, FAMILIES[family](),
                         tmp_path)
  _, logits, batch = _import(str(tmp_path), scan_layers=False)
  with torch.no_grad():
    ref = hf_model(torch.from_numpy(batch["tokens"]).long()).logits.float().numpy()
  np.testing.assert_allclose(logits, ref, atol=1e-4, rtol=0)


def test_bfloat16_checkpoint_is_widened(tmp_path):
  hf_config = FAMILIES["qwen2"]()
  hf_model = save_random(transformers.AutoModelForCausalLM.from_config, hf_config, tmp_path)
  hf_model.to(torch.bfloat16).save_pretrained(tmp_path)
  _, logits, batch = _import(str(tmp_path))
  with torch.no_grad():
    ref = hf_model.float()(torch.from_numpy(batch["tokens"]).long()).logits.numpy()
  np.testing.assert_allclose(logits, ref, atol=1e-4, rtol=0)


def test_mismatches_fail_naming_the_tensor(tmp_path):
  save_random(transformers.AutoModelForCausalLM.from_config, FAMILIES["qwen3"](), tmp_path)
  model_config = tiny_model_config()
  presets.apply_decoder(model_config, str(tmp_path))
  from safetensors.numpy import load_file, save_file  # pylint: disable=import-outside-toplevel
  file = os.path.join(tmp_path, "model.safetensors")
  tensors = load_file(file)

  def attempt(changed_config=None, **edits):
    save_file({**tensors, **edits}, file)
    cfg = changed_config or model_config
    config = run_config(cfg)
    mesh, rules = mesh_and_rules(config)
    _, params = sharded_random_params(cfg, mesh, rules, text_batch(96))
    apply_init_from(cfg, params)

  name = "model.layers.1.self_attn.k_norm.weight"
  with pytest.raises(CheckpointError, match=f"tensor '{name}' has shape"):
    attempt(**{name: np.ones(3, np.float32)})
  tensors_missing = dict(tensors)
  del tensors_missing[name]
  save_file(tensors_missing, file)
  with pytest.raises(CheckpointError, match=f"tensor '{name}' is missing"):
    config = run_config(model_config)
    mesh, rules = mesh_and_rules(config)
    _, params = sharded_random_params(model_config, mesh, rules, text_batch(96))
    apply_init_from(model_config, params)
  with pytest.raises(CheckpointError, match="unexpected tensor 'model.layers.2.mlp"):
    attempt(**{"model.layers.2.mlp.up_proj.weight": np.ones((64, 32), np.float32)})


def test_a_setting_differing_from_the_checkpoint_fails_naming_it(tmp_path):
  save_random(transformers.AutoModelForCausalLM.from_config, FAMILIES["llama3"](), tmp_path)
  model_config = tiny_model_config()
  presets.apply_decoder(model_config, str(tmp_path))
  model_config.decoder.rope_theta = 10000.0
  mesh, rules = mesh_and_rules(run_config(model_config))
  _, params = sharded_random_params(model_config, mesh, rules, text_batch(96))
  with pytest.raises(CheckpointError, match="model.decoder.rope_theta = 10000.0"):
    apply_init_from(model_config, params)


def test_unsupported_checkpoints_fail_naming_the_setting(tmp_path):
  model_config = tiny_model_config()
  with pytest.raises(ConfigError, match="no config.json"):
    presets.apply_decoder(model_config, str(tmp_path))
  (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba"}))
  with pytest.raises(ConfigError, match="model_type 'mamba' is not supported"):
    presets.apply_decoder(model_config, str(tmp_path))
  (tmp_path / "config.json").write_text(json.dumps(
      dict(FAMILIES["llama3"]().to_dict(), hidden_act="gelu")))
  with pytest.raises(ConfigError, match="hidden_act='gelu' is not supported"):
    presets.apply_decoder(model_config, str(tmp_path))
  (tmp_path / "config.json").write_text(json.dumps(dict(
      FAMILIES["gemma3"]().to_dict(), layer_types=["full_attention", "sliding_attention"])))
  with pytest.raises(ConfigError, match="layer_types=.* is not supported"):
    presets.apply_decoder(model_config, str(tmp_path))
  (tmp_path / "config.json").write_text(json.dumps(dict(
      FAMILIES["gemma2"]().to_dict(), hidden_activation="relu")))
  with pytest.raises(ConfigError, match="hidden_activation='relu' is not supported"):
    presets.apply_decoder(model_config, str(tmp_path))
