"""Image+text through the whole model: a tiny random LLaVA (SigLIP + Qwen3) built with
transformers imports with logit parity; an mmscale model exports to a LLaVA checkpoint (and its
decoder to a text model) that transformers loads and that greedily generates mmscale's tokens."""

import jax
import numpy as np
import pytest
from flax import linen as nn

from mmscale.eval.generate import greedy_generate
from mmscale.errors import ConfigError
from mmscale.hf import export, families, presets
from mmscale.hf.init_from import apply_init_from
from mmscale.models.registry import build_model
from mmscale.testing import numpy_init, tiny_model_config
from tests.hf_helpers import (TINY_TEXT, mesh_and_rules, run_config, save_random,
                              sharded_random_params)
from tests.test_hf_decoder import FAMILIES
from tests.test_hf_vision import TINY_CLIP, TINY_SIGLIP

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

IMAGE_TOKEN = 95  # the last id of the tiny vocabulary
K = 16  # (32 / 8)^2 patches = image tokens


def mm_batch(rows=8, length=24, seed=0):
  """Rows [token, K image placeholders, text...]; images in [-1, 1]."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(1, IMAGE_TOKEN, (rows, length)).astype(np.int32)
  tokens[:, 1:1 + K] = IMAGE_TOKEN
  positions = np.broadcast_to(np.arange(length, dtype=np.int32), (rows, length))
  return {"tokens": tokens, "positions": np.ascontiguousarray(positions),
          "segment_ids": np.ones_like(tokens), "mask_ar": np.ones_like(tokens),
          "mask_loss": np.ones_like(tokens),
          "images": rng.uniform(-1, 1, (rows, 1, 32, 32, 3)).astype(np.float32),
          "image_positions": np.tile(np.arange(1, 1 + K, dtype=np.int32), (rows, 1))}


def hf_logits(hf_model, batch):
  with torch.no_grad():
    return hf_model(input_ids=torch.from_numpy(batch["tokens"]).long(),
                    pixel_values=torch.from_numpy(batch["images"][:, 0].transpose(0, 3, 1, 2))
                    ).logits.float().numpy()


def test_llava_import_parity(tmp_path):
  config = transformers.LlavaConfig(
      vision_config=transformers.SiglipVisionConfig(**TINY_SIGLIP),
      text_config=transformers.Qwen3Config(**TINY_TEXT, head_dim=16, tie_word_embeddings=False),
      image_token_index=IMAGE_TOKEN, projector_hidden_act="gelu_pytorch_tanh",
      vision_feature_layer=-1, vision_feature_select_strategy="full", image_seq_length=K)
  hf_model = save_random(transformers.LlavaForConditionalGeneration, config, tmp_path)
  model_config = tiny_model_config(num_tokens=K)
  presets.apply_vision(model_config, str(tmp_path))
  presets.apply_decoder(model_config, str(tmp_path))
  model_config.init_from.connector = str(tmp_path)
  model_config.connector.hidden_dim = 0
  model_config.decoder.causal_only = True
  batch = mm_batch()
  config = run_config(model_config, {"data": 2, "fsdp": 2, "tensor": 2})
  config.data.seq_len = 24
  mesh, rules = mesh_and_rules(config)
  model, params = sharded_random_params(model_config, mesh, rules, batch)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    params = apply_init_from(model_config, params)
    logits = np.asarray(model.apply({"params": params}, batch))
  np.testing.assert_allclose(logits, hf_logits(hf_model, batch), atol=1e-4, rtol=0)


def test_llava_clip_gemma3_import_parity(tmp_path):
  """LLaVA-1.5's recipe with a Gemma 3 decoder: CLIP features from the penultimate layer
  without the class token (vision_feature_layer -2, strategy 'default', read from config.json),
  a sliding-window decoder whose embeddings are scaled by sqrt(width) around unscaled image
  tokens."""
  config = transformers.LlavaConfig(
      vision_config=transformers.CLIPVisionConfig(**TINY_CLIP), text_config=FAMILIES["gemma3"](),
      image_token_index=IMAGE_TOKEN, projector_hidden_act="gelu_pytorch_tanh",
      vision_feature_layer=-2, vision_feature_select_strategy="default", image_seq_length=K)
  config.text_config._attn_implementation = "eager"  # pylint: disable=protected-access
  hf_model = save_random(transformers.LlavaForConditionalGeneration, config, tmp_path)
  model_config = tiny_model_config(num_tokens=K)
  presets.apply_vision(model_config, str(tmp_path))
  presets.apply_decoder(model_config, str(tmp_path))
  assert model_config.init_from.vit_feature_layer == -2 and model_config.vit.depth == 2
  model_config.init_from.connector = str(tmp_path)
  model_config.connector.hidden_dim = 0
  model_config.decoder.causal_only = True
  batch = mm_batch()
  # transformers normalises pixels with OpenAI's CLIP mean / std (no preprocessor file here)
  mean, std = np.asarray(model_config.vit.pixel_mean), np.asarray(model_config.vit.pixel_std)
  theirs = dict(batch, images=(((batch["images"] + 1) / 2 - mean) / std).astype(np.float32))
  config = run_config(model_config, {"data": 2, "fsdp": 2, "tensor": 2})
  config.data.seq_len = 24
  mesh, rules = mesh_and_rules(config)
  model, params = sharded_random_params(model_config, mesh, rules, batch)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    params = apply_init_from(model_config, params)
    logits = np.asarray(model.apply({"params": params}, batch))
  np.testing.assert_allclose(logits, hf_logits(hf_model, theirs), atol=1e-4, rtol=0)


def exportable_config():
  """An mmscale-native model (Qwen3-like decoder, untied, embeddings scaled by sqrt(width))."""
  c = tiny_model_config(num_tokens=K)
  c.vit.update(image_size=32, patch_size=8, width=32, depth=2, heads=4, mlp_dim=64,
               final_norm=False)
  c.connector.update(name="mlp", hidden_dim=0)
  c.decoder.update(vocab_size=96, width=32, depth=2, heads=4, kv_heads=2, head_dim=16, mlp_dim=64,
                   qk_norm=True, tie_embeddings=False, causal_only=True)
  return c


def test_llava_export_generates_identically(tmp_path):
  model_config = exportable_config()
  model = build_model(model_config)
  batch = mm_batch(rows=2, length=20, seed=1)
  params = nn.meta.unbox(numpy_init(model, batch, seed=3)["params"])
  export.export_llava(model_config, params, str(tmp_path), image_token_id=IMAGE_TOKEN)
  hf_model = transformers.LlavaForConditionalGeneration.from_pretrained(str(tmp_path)).eval()
  np.testing.assert_allclose(np.asarray(model.apply({"params": params}, batch)),
                             hf_logits(hf_model, batch), atol=1e-4, rtol=0)
  ours = np.asarray(greedy_generate(model, params, batch, max_new_tokens=8))
  with torch.no_grad():
    theirs = hf_model.generate(
        input_ids=torch.from_numpy(batch["tokens"]).long(),
        pixel_values=torch.from_numpy(batch["images"][:, 0].transpose(0, 3, 1, 2)),
        attention_mask=torch.ones(batch["tokens"].shape, dtype=torch.long), max_new_tokens=8,
        do_sample=False, eos_token_id=None, pad_token_id=0).numpy()
  np.testing.assert_array_equal(ours, theirs[:, batch["tokens"].shape[1]:])

  text_dir = tmp_path / "text"
  export.export_text(model_config, params, str(text_dir))
  text_model = transformers.AutoModelForCausalLM.from_pretrained(str(text_dir)).eval()
  tokens = batch["tokens"][:, K + 1:]
  text = {"tokens": tokens}
  with torch.no_grad():
    ref = text_model(torch.from_numpy(tokens).long()).logits.numpy()
  np.testing.assert_allclose(np.asarray(model.apply({"params": params}, text)), ref, atol=1e-4,
                             rtol=0)


def test_llava_export_with_a_clip_tower(tmp_path):
  """A CLIP-style tower (class token, pre-norm, no patch bias, quick-GELU, OpenAI pixels)
  exports as a CLIP tower whose class token LLaVA drops ('default' strategy): same logits, and
  the export re-imports through presets (config.json + preprocessor_config.json)."""
  model_config = exportable_config()
  model_config.vit.update(class_token=True, pre_norm=True, patch_bias=False,
                          activation="quick_gelu", norm_eps=1e-5,
                          **families.OPENAI_CLIP_PIXELS)
  model = build_model(model_config)
  batch = mm_batch(rows=2, length=20, seed=2)
  params = nn.meta.unbox(numpy_init(model, batch, seed=4)["params"])
  export.export_llava(model_config, params, str(tmp_path), image_token_id=IMAGE_TOKEN)
  hf_model = transformers.LlavaForConditionalGeneration.from_pretrained(str(tmp_path)).eval()
  mean, std = np.asarray(model_config.vit.pixel_mean), np.asarray(model_config.vit.pixel_std)
  theirs = dict(batch, images=(((batch["images"] + 1) / 2 - mean) / std).astype(np.float32))
  np.testing.assert_allclose(np.asarray(model.apply({"params": params}, batch)),
                             hf_logits(hf_model, theirs), atol=1e-4, rtol=0)
  again = exportable_config()
  presets.apply_vision(again, str(tmp_path))
  assert {k: again.vit[k] for k in model_config.vit} == dict(model_config.vit)


def test_export_refuses_what_llava_cannot_express(tmp_path):
  model_config = exportable_config()
  model_config.decoder.causal_only = False
  with pytest.raises(ConfigError, match="model.decoder.causal_only"):
    export.llava_config(model_config, IMAGE_TOKEN)
  model_config = exportable_config()
  model_config.vit.final_norm = True
  with pytest.raises(ConfigError, match="model.vit.final_norm"):
    export.llava_config(model_config, IMAGE_TOKEN)
  model_config = exportable_config()
  model_config.decoder.tie_embeddings = True
  with pytest.raises(ConfigError, match="model.decoder.scale_embeddings"):
    export.text_config(model_config)
  model_config = exportable_config()
  model_config.vit.class_token = True  # without CLIP's pre-norm: neither SigLIP nor CLIP
  with pytest.raises(ConfigError, match="model.vit.class_token"):
    export.llava_config(model_config, IMAGE_TOKEN)
  model_config = exportable_config()
  model_config.decoder.update(norm_scale_plus_one=True, post_norms=True, qk_norm=False,
                              mlp_activation="gelu_tanh", final_logit_softcap=30.0,
                              scale_embeddings=True)
  assert export.text_config(model_config)["model_type"] == "gemma2"
  with pytest.raises(ConfigError, match="model.decoder.final_logit_softcap"):
    export.llava_config(model_config, IMAGE_TOKEN)
