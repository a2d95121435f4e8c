"""`model.init_from`: parts of the model start from Hugging Face checkpoints.

`model.init_from.decoder` and `model.init_from.vit` name local checkpoint directories; the
connector (and any part left "") keeps its fresh initialisation. The model config must describe
the checkpoints' architectures: write it with `mmscale.hf.presets` (the family presets) so that
they agree, and any disagreement fails naming the tensor.
"""

from __future__ import annotations

from typing import Any

from mmscale.errors import CheckpointError
from mmscale.hf import load
from mmscale.hf.checkpoint import Checkpoint
from mmscale.hf.families import decoder_family
from mmscale.hf.mapping import decoder_tensors
from mmscale.registry import Registry

# config.model.init_from.<part> -> loader(model_config, checkpoint, params subtree) -> subtree
PART_LOADERS = Registry("init_from part")


def _get(tree, path, where):
  for key in path:
    if key not in tree:
      raise CheckpointError(f"{where}: the model has no parameter {'/'.join(path)}")
    tree = tree[key]
  return tree


def _set(tree: dict, path, value) -> None:
  for key in path[:-1]:
    tree = tree[key]
  tree[path[-1]] = value


def _copy_dicts(tree):
  return {k: _copy_dicts(v) for k, v in tree.items()} if isinstance(tree, dict) else tree


def decoder_prefix(ckpt: Checkpoint) -> str:
  """Where the text model's tensors sit: 'model.' (*ForCausalLM) or 'model.language_model.'
  (LLaVA-style image-text checkpoints)."""
  return "model.language_model." if any(
      n.startswith("model.language_model.") for n in ckpt.names()) else "model."


@PART_LOADERS.register("decoder")
def load_decoder(model_config, ckpt: Checkpoint, params: dict) -> dict:
  """params['decoder'] (arrays or sharded ShapeDtypeStructs) -> the checkpoint's decoder, in
  the same shardings. Scanned decoders stack the layers on the leading axis."""
  hf_config = ckpt.config.get("text_config", ckpt.config)
  decoder_family(hf_config, ckpt.field)
  d = model_config.decoder
  prefix = decoder_prefix(ckpt)
  top, per_layer = decoder_tensors(d, prefix)
  out = _copy_dicts(params)
  used = set()
  for tensor in top:
    _set(out, tensor.path, load.load_tensor(ckpt, tensor, _get(params, tensor.path, ckpt.path)))
    used.add(tensor.hf_name)
  for tensor in per_layer:
    if d.scan_layers:
      path = ("layers",) + tensor.path
      _set(out, path, load.load_stacked(ckpt, tensor, _get(params, path, ckpt.path)))
    else:
      for i in range(d.depth):
        path = (f"layers_{i}",) + tensor.path
        _set(out, path, load.load_tensor(ckpt, tensor.at(i), _get(params, path, ckpt.path)))
    used.update(tensor.hf_name.format(i=i) for i in range(d.depth))
  ignored = ("rotary_emb.inv_freq",) + (("lm_head.weight",) if d.tie_embeddings else ())
  load.check_unexpected(ckpt, used, (prefix, "lm_head."), ignored)
  return out


def apply_init_from(model_config, params: Any) -> Any:
  """params (the run's sharded params, or sharded ShapeDtypeStructs) -> the same tree with
  every `model.init_from` part that names a directory replaced by that checkpoint's tensors."""
  out = dict(params)
  for part in PART_LOADERS:
    path = model_config.init_from.get(part, "")
    if path:
      ckpt = Checkpoint(path, field=f"model.init_from.{part}")
      out[part] = PART_LOADERS.get(part)(model_config, ckpt, params[part])
  return out
