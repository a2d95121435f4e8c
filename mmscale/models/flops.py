"""Analytic training FLOPs and parameter counts (for TFLOP/s and MFU logging, scaling fits).

Training FLOPs = 3 x forward (backward is twice the forward), forward = 2 x multiply-accumulates
of every matmul. Attention scores and values are counted over the full T x T (and P x P) square:
that is what the dense kernel computes, causal or not. Norms, softmax, RoPE and the embedding
gather are left out (small next to the matmuls).
"""

import jax
import numpy as np

from mmscale.models.connectors import get_connector
from mmscale.models.mllm import head_dim, num_patches


def vit_macs_per_image(model_config) -> int:
  """Forward MACs of the ViT on one image: patch embedding + depth x (attention + MLP)."""
  v = model_config.vit
  p, w = num_patches(model_config), v.width
  patch_embed = p * v.patch_size * v.patch_size * 3 * w
  attention = 4 * p * w * w + 2 * p * p * w  # q, k, v, out projections; scores + values
  mlp = 2 * p * w * v.mlp_dim
  return patch_embed + v.depth * (attention + mlp)


def connector_macs_per_image(model_config) -> int:
  """Forward MACs of the connector on one image (each connector class defines its count)."""
  c = model_config.connector
  return get_connector(c.name).macs(
      num_patches(model_config), model_config.vit.width, c.num_tokens,
      c.hidden_dim or model_config.decoder.width, model_config.decoder.width,
      model_config.connector.depth)


def decoder_macs_per_sequence(model_config, seq_len: int) -> int:
  """Forward MACs of the decoder over one sequence of seq_len tokens, including the logits."""
  d, t = model_config.decoder, seq_len
  hd = head_dim(model_config)
  projections = t * d.width * hd * (2 * d.heads + 2 * d.kv_heads)  # q, out; k, v
  attention = 2 * t * t * d.heads * hd  # scores + weighted values, full square
  mlp = 3 * t * d.width * d.mlp_dim  # SwiGLU: gate, up, down
  # MoE layers: the router plus the k experts each token is sent to (active, not total, experts:
  # capacity slack and idle experts are not model FLOPs, so MFU stays comparable with dense).
  moe_layers = _moe_layers(model_config)
  moe_mlp = t * d.width * d.num_experts + d.experts_per_token * 3 * t * d.width * _moe_dim(d)
  return (d.depth * (projections + attention) + (d.depth - moe_layers) * mlp
          + moe_layers * moe_mlp + t * d.width * d.vocab_size)


def _moe_layers(model_config) -> int:
  d = model_config.decoder
  return d.depth // d.moe_every if d.moe_every else 0


def _moe_dim(decoder_config) -> int:
  return decoder_config.moe_mlp_dim or decoder_config.mlp_dim


def param_counts(model_config, total: int) -> dict[str, int]:
  """{'total', 'active'}: `total` (param_count of the model) and the parameters one token uses,
  i.e. without the (num_experts - experts_per_token) idle experts of every MoE layer."""
  d = model_config.decoder
  idle = (d.num_experts - d.experts_per_token) * 3 * d.width * _moe_dim(d)
  return {"total": total, "active": total - _moe_layers(model_config) * idle}


def train_flops_per_sequence(model_config, seq_len: int, num_images: int) -> float:
  """Training FLOPs for one sequence holding num_images images: 6 x forward MACs."""
  per_image = vit_macs_per_image(model_config) + connector_macs_per_image(model_config)
  macs = decoder_macs_per_sequence(model_config, seq_len) + num_images * per_image
  return 6.0 * float(macs)


def param_count(params) -> int:
  """Number of scalars in a (possibly logically boxed) param tree."""
  leaves = jax.tree_util.tree_leaves(params)
  return int(sum(np.prod(np.shape(x)) for x in leaves))
