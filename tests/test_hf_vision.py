"""Vision import: tiny random SigLIP and CLIP vision towers built with transformers (no
download), imported into sharded mmscale params; image features must match to 1e-4 in float32:
SigLIP with and without the final LayerNorm, CLIP as LLaVA-1.5 takes it (the penultimate
layer's patch tokens, class token dropped) with the checkpoint's own pixel normalisation."""

import jax
import numpy as np
import pytest
from flax import linen as nn

from mmscale.errors import CheckpointError
from mmscale.hf import presets
from mmscale.hf.init_from import apply_init_from
from mmscale.testing import synthetic_batch, tiny_model_config
from tests.hf_helpers import mesh_and_rules, run_config, save_random, sharded_random_params

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

TINY_SIGLIP = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                   num_attention_heads=4, image_size=32, patch_size=8)
TINY_CLIP = dict(TINY_SIGLIP, num_hidden_layers=3)
# not OpenAI's defaults, so that reading preprocessor_config.json is what makes the test pass
CLIP_MEAN, CLIP_STD = [0.4, 0.5, 0.6], [0.2, 0.3, 0.25]


def siglip_vision(path, seed=0, **overrides):
  config = transformers.SiglipVisionConfig(**dict(TINY_SIGLIP, **overrides))
  return save_random(transformers.SiglipVisionModel, config, path, seed)


def image_features(model_config, images):
  config = run_config(model_config, {"data": 4, "fsdp": 1, "tensor": 2})
  mesh, rules = mesh_and_rules(config)
  batch = synthetic_batch(model_config, batch=8, seq_len=32)
  model, params = sharded_random_params(model_config, mesh, rules, batch)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    params = apply_init_from(model_config, params)
    return np.asarray(model.apply({"params": params}, images, method=lambda m, x: m.vit(x)))


@pytest.mark.slow
@pytest.mark.parametrize("final_norm", [False, True])
def test_siglip_feature_parity(final_norm, tmp_path):
  """36 px images in 8 px patches: as in siglip-so400m-patch14-384, the size does not divide
  and the convolution leaves the last pixels out (4 x 4 patches)."""
  hf_model = siglip_vision(tmp_path, image_size=36)
  model_config = tiny_model_config()
  presets.apply_vision(model_config, str(tmp_path), final_norm=final_norm)
  model_config.connector.num_tokens = 16
  images = np.random.default_rng(0).uniform(-1, 1, (8, 36, 36, 3)).astype(np.float32)
  ours = image_features(model_config, images)
  with torch.no_grad():
    out = hf_model(torch.from_numpy(images.transpose(0, 3, 1, 2)), output_hidden_states=True)
  ref = (out.last_hidden_state if final_norm else out.hidden_states[-1]).numpy()
  np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


def clip_vision(path, seed=0):
  """A tiny random CLIPVisionModel + its image processor's config (mean / std)."""
  model = save_random(transformers.CLIPVisionModel, transformers.CLIPVisionConfig(**TINY_CLIP),
                      path, seed)
  transformers.CLIPImageProcessor(image_mean=CLIP_MEAN, image_std=CLIP_STD).save_pretrained(path)
  return model


@pytest.mark.parametrize("feature_layer,final_norm", [(-2, False), (-1, True)])
def test_clip_feature_parity(feature_layer, final_norm, tmp_path):
  """LLaVA-1.5's features (hidden_states[-2] without the class token); and the last layer with
  CLIP's post_layernorm on every patch token (transformers applies it to the class token only,
  so the reference applies it to the patch tokens)."""
  hf_model = clip_vision(tmp_path)
  model_config = tiny_model_config()
  presets.apply_vision(model_config, str(tmp_path), final_norm=final_norm,
                       feature_layer=feature_layer)
  assert model_config.vit.depth == TINY_CLIP["num_hidden_layers"] + 1 + feature_layer
  model_config.connector.num_tokens = 16
  pixels = np.random.default_rng(0).uniform(0, 1, (8, 32, 32, 3)).astype(np.float32)
  ours = image_features(model_config, pixels * 2 - 1)  # the pipeline's [-1, 1] images
  normalised = (pixels - np.asarray(CLIP_MEAN, np.float32)) / np.asarray(CLIP_STD, np.float32)
  with torch.no_grad():
    out = hf_model(torch.from_numpy(normalised.transpose(0, 3, 1, 2)), output_hidden_states=True)
    ref = out.hidden_states[feature_layer][:, 1:]
    if final_norm:
      ref = getattr(hf_model, "vision_model", hf_model).post_layernorm(ref)
  assert ours.shape == (8, 16, 32)
  np.testing.assert_allclose(ours, ref.numpy(), atol=1e-4, rtol=0)


def test_vision_mismatch_fails_naming_the_field(tmp_path):
  siglip_vision(tmp_path)
  model_config = tiny_model_config()
  presets.apply_vision(model_config, str(tmp_path))
  model_config.connector.num_tokens = 16
  model_config.vit.depth = 1  # the checkpoint has 2 layers
  with pytest.raises(CheckpointError, match="model.vit.depth = 1 but the checkpoint's"):
    image_features(model_config, np.zeros((8, 32, 32, 3), np.float32))
