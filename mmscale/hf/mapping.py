"""Which checkpoint tensor fills which mmscale parameter, and how it is laid out.

A `Tensor` names one mmscale parameter (its path under `params`, relative to a block for the
per-layer ones) and the checkpoint tensor behind it; `layout` says how the two differ:
- 'copy': same shape (norm scales, embeddings, position embeddings);
- 'linear': a torch `nn.Linear` weight float[out, in] vs. mmscale's kernel
  float[*in_dims, *out_dims]; `num_in` of the kernel's leading dims are contracted (2 for the
  attention out-projection [heads, head_dim, D]);
- 'bias': a flat float[out] vs. mmscale's float[*out_dims] (e.g. [heads, head_dim]);
- 'conv': a torch Conv2d weight float[out, in, kh, kw] vs. flax's float[kh, kw, in, out].
The same table drives import (`to_mmscale`) and export (`to_hf`), so the two cannot disagree.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Tensor:
  path: tuple[str, ...]   # under params (per-layer: under the block)
  hf_name: str            # '{i}' = the layer index for per-layer tensors
  layout: str = "copy"    # copy | linear | bias | conv
  num_in: int = 1         # 'linear': contracted leading dims of the mmscale kernel

  def at(self, i: int) -> "Tensor":
    """This per-layer tensor with its '{i}' filled (one layer of an unscanned stack)."""
    return dataclasses.replace(self, hf_name=self.hf_name.format(i=i))

  def to_mmscale(self, w: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Checkpoint array -> float[shape] in mmscale's layout."""
    if self.layout == "linear":
      return np.ascontiguousarray(w.T).reshape(shape)
    if self.layout == "conv":
      return np.ascontiguousarray(w.transpose(2, 3, 1, 0)).reshape(shape)
    return w.reshape(shape)

  def to_hf(self, w: np.ndarray) -> np.ndarray:
    """mmscale array -> the checkpoint's layout (the inverse of `to_mmscale`)."""
    if self.layout == "linear":
      return np.ascontiguousarray(
          w.reshape(math.prod(w.shape[:self.num_in]), -1).T)
    if self.layout == "conv":
      return np.ascontiguousarray(w.transpose(3, 2, 0, 1))
    if self.layout == "bias":
      return w.reshape(-1)
    while w.ndim > 1 and w.shape[0] == 1:  # [1, P, D] position embeddings -> [P, D]
      w = w[0]
    return w


def decoder_tensors(decoder_config, prefix: str = "model.",
                    lm_head: str = "lm_head.weight") -> tuple[list[Tensor], list[Tensor]]:
  """(top-level tensors, per-layer tensors) of a Llama / Qwen2 / Qwen3 / Gemma 2 / Gemma 3
  decoder with `config.model.decoder` settings; paths are under params['decoder']. `prefix` is
  where the text model sits in the checkpoint ('model.' in *ForCausalLM; 'model.language_model.' or
  'language_model.model.' in LLaVA-style checkpoints), `lm_head` the output projection's name."""
  d = decoder_config
  top = [Tensor(("embedding", "embedding"), f"{prefix}embed_tokens.weight"),
         Tensor(("final_norm", "scale"), f"{prefix}norm.weight")]
  if not d.tie_embeddings:
    top.append(Tensor(("unembed", "kernel"), lm_head, "linear"))
  layer = f"{prefix}layers.{{i}}."
  # Gemma's norms around both sub-layers (post_norms) take the name Llama gives the MLP's input
  # norm for the attention output's; all of Gemma's store (1 + scale)'s zero-centred scale.
  norms = ([("norm_attn", "input_layernorm"), ("norm_attn_out", "post_attention_layernorm"),
            ("norm_mlp", "pre_feedforward_layernorm"),
            ("norm_mlp_out", "post_feedforward_layernorm")] if d.post_norms else
           [("norm_attn", "input_layernorm"), ("norm_mlp", "post_attention_layernorm")])
  per_layer = [Tensor((ours, "scale"), f"{layer}{theirs}.weight") for ours, theirs in norms]
  per_layer += [
      Tensor(("attn", "query", "kernel"), layer + "self_attn.q_proj.weight", "linear"),
      Tensor(("attn", "key", "kernel"), layer + "self_attn.k_proj.weight", "linear"),
      Tensor(("attn", "value", "kernel"), layer + "self_attn.v_proj.weight", "linear"),
      Tensor(("attn", "out", "kernel"), layer + "self_attn.o_proj.weight", "linear", num_in=2),
      Tensor(("mlp", "wi_gate", "kernel"), layer + "mlp.gate_proj.weight", "linear"),
      Tensor(("mlp", "wi_up", "kernel"), layer + "mlp.up_proj.weight", "linear"),
      Tensor(("mlp", "wo", "kernel"), layer + "mlp.down_proj.weight", "linear"),
  ]
  if d.qkv_bias:
    per_layer += [Tensor(("attn", n, "bias"), layer + f"self_attn.{p}_proj.bias", "bias")
                  for n, p in (("query", "q"), ("key", "k"), ("value", "v"))]
  if d.qk_norm:
    per_layer += [Tensor(("attn", "query_norm", "scale"), layer + "self_attn.q_norm.weight"),
                  Tensor(("attn", "key_norm", "scale"), layer + "self_attn.k_norm.weight")]
  return top, per_layer


def vision_tensors(vit_config, prefix: str) -> tuple[list[Tensor], list[Tensor]]:
  """(top-level tensors, per-block tensors) of a SigLIP or CLIP vision tower with
  `config.model.vit` settings; paths are under params['vit'], per-block ones under 'block_{i}'.
  `prefix` is where the tower sits ('vision_model.', 'model.vision_tower.', ... or '')."""
  v = vit_config
  top = [Tensor(("patch_embed", "kernel"), f"{prefix}embeddings.patch_embedding.weight", "conv"),
         Tensor(("pos_embedding",), f"{prefix}embeddings.position_embedding.weight")]
  if v.patch_bias:
    top.append(Tensor(("patch_embed", "bias"), f"{prefix}embeddings.patch_embedding.bias"))
  if v.class_token:  # CLIP: float[D] -> float[1, 1, D]
    top.append(Tensor(("cls_token",), f"{prefix}embeddings.class_embedding"))
  if v.pre_norm:  # CLIP's 'pre_layrnorm' (sic)
    top += [Tensor(("ln_pre", "scale"), f"{prefix}pre_layrnorm.weight"),
            Tensor(("ln_pre", "bias"), f"{prefix}pre_layrnorm.bias")]
  if v.final_norm:
    top += [Tensor(("ln_final", "scale"), f"{prefix}post_layernorm.weight"),
            Tensor(("ln_final", "bias"), f"{prefix}post_layernorm.bias")]
  layer = f"{prefix}encoder.layers.{{i}}."
  per_layer = []
  for ours, theirs in (("ln_attn", "layer_norm1"), ("ln_mlp", "layer_norm2")):
    per_layer += [Tensor((ours, "scale"), f"{layer}{theirs}.weight"),
                  Tensor((ours, "bias"), f"{layer}{theirs}.bias")]
  for ours, theirs, num_in in (("query", "q_proj", 1), ("key", "k_proj", 1),
                               ("value", "v_proj", 1), ("out", "out_proj", 2)):
    per_layer += [Tensor(("attn", ours, "kernel"), f"{layer}self_attn.{theirs}.weight", "linear",
                         num_in=num_in),
                  Tensor(("attn", ours, "bias"), f"{layer}self_attn.{theirs}.bias", "bias")]
  for fc in ("fc1", "fc2"):
    per_layer += [Tensor(("mlp", fc, "kernel"), f"{layer}mlp.{fc}.weight", "linear"),
                  Tensor(("mlp", fc, "bias"), f"{layer}mlp.{fc}.bias", "bias")]
  return top, per_layer


def connector_tensors(prefix: str = "multi_modal_projector.") -> list[Tensor]:
  """The 'mlp' connector <-> a LLaVA projector (linear_1, activation, linear_2).

  Paths are under params['connector']."""
  return [Tensor(("mlp", "fc1", "kernel"), f"{prefix}linear_1.weight", "linear"),
          Tensor(("mlp", "fc1", "bias"), f"{prefix}linear_1.bias", "bias"),
          Tensor(("mlp", "fc2", "kernel"), f"{prefix}linear_2.weight", "linear"),
          Tensor(("mlp", "fc2", "bias"), f"{prefix}linear_2.bias", "bias")]
