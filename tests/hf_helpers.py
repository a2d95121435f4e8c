"""Shared pieces of the Hugging Face tests: tiny random transformers models saved offline, and
mmscale params for them on the 8 simulated devices."""

import jax
import numpy as np
from flax import linen as nn

from mmscale.models.registry import build_model
from mmscale.parallel import mesh as mesh_lib
from mmscale.parallel import rules as sharding_rules
from mmscale.config import base_config
from mmscale.testing import numpy_init

TINY_TEXT = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)


def save_random(model_cls, config, path, seed=0):
  """A transformers model with random weights (biases and norms too, so that a wrong mapping
  shows), saved as safetensors; returns the model in eval mode."""
  import torch  # pylint: disable=import-outside-toplevel
  torch.manual_seed(seed)
  model = model_cls(config).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if name.endswith("bias") or "norm" in name:
        p.add_(0.1 * torch.randn_like(p))
  model.save_pretrained(path)
  return model


def mesh_and_rules(config):
  from mmscale.spec import validate  # pylint: disable=import-outside-toplevel
  spec = validate(config, jax.device_count())
  return mesh_lib.make_mesh(spec.mesh_shape, jax.devices()), spec.rules


def sharded_random_params(model_config, mesh, rules, batch):
  """numpy_init params placed in the run's shardings (the parts no checkpoint fills)."""
  model = build_model(model_config)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    boxed = numpy_init(model, batch)["params"]
  shardings = sharding_rules.tree_shardings(nn.get_partition_spec(boxed), mesh, rules)
  return model, jax.tree.map(jax.device_put, nn.meta.unbox(boxed), shardings)


def run_config(model_config, mesh_shape=None):
  c = base_config()
  c.model = model_config
  c.data.batch_size = 8
  if mesh_shape:
    c.mesh.shape.update(mesh_shape)
  return c


def text_batch(vocab, rows=8, length=12, seed=0):
  tokens = np.random.default_rng(seed).integers(0, vocab, (rows, length)).astype(np.int32)
  return {"tokens": tokens}
