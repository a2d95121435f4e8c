"""Vision import: a tiny random SigLIP vision tower built with transformers (no download),
imported into sharded mmscale params; image features must match to 1e-4 in float32, with and
without the final LayerNorm."""

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


def siglip_vision(path, seed=0):
  config = transformers.SiglipVisionConfig(**TINY_SIGLIP)
  return save_random(transformers.SiglipVisionModel, config, path, seed)


def image_features(model_config, images):
  config = run_config(model_config, {"data": 4, "fsdp": 1, "tensor": 2})
  mesh, rules = mesh_and_rules(config)
  batch = synthetic_batch(model_config, batch=8, seq_len=32)
  model, params = sharded_random_params(model_config, mesh, rules, batch)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    params = apply_init_from(model_config, params)
    return np.asarray(model.apply({"params": params}, images, method=lambda m, x: m.vit(x)))


@pytest.mark.parametrize("final_norm", [False, True])
def test_siglip_feature_parity(final_norm, tmp_path):
  hf_model = siglip_vision(tmp_path)
  model_config = tiny_model_config()
  presets.apply_vision(model_config, str(tmp_path), final_norm=final_norm)
  model_config.connector.num_tokens = 16
  images = np.random.default_rng(0).uniform(-1, 1, (8, 32, 32, 3)).astype(np.float32)
  ours = image_features(model_config, images)
  with torch.no_grad():
    out = hf_model(torch.from_numpy(images.transpose(0, 3, 1, 2)), output_hidden_states=True)
  ref = (out.last_hidden_state if final_norm else out.hidden_states[-1]).numpy()
  np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


def test_vision_mismatch_fails_naming_the_field(tmp_path):
  siglip_vision(tmp_path)
  model_config = tiny_model_config()
  presets.apply_vision(model_config, str(tmp_path))
  model_config.connector.num_tokens = 16
  model_config.vit.depth = 1  # the checkpoint has 2 layers
  with pytest.raises(CheckpointError, match="model.vit.depth = 1 but the checkpoint's"):
    image_features(model_config, np.zeros((8, 32, 32, 3), np.float32))
