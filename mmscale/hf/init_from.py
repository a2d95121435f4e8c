"""`model.init_from`: parts of the model start from Hugging Face checkpoints.

`model.init_from.decoder` and `model.init_from.vit` name local checkpoint directories;
`model.init_from.connector` a LLaVA-style checkpoint whose projector starts the 'mlp' connector
(usually left "": a fresh connector). `model.init_from.vit_feature_layer` says which of the
vision checkpoint's encoder layers the tower ends at (-1 the last; -2 LLaVA-1.5's CLIP features:
`model.vit.depth` is then one less than the checkpoint's and its last layer is not loaded). The model config must describe the checkpoints'
architectures: write it with `mmscale.hf.presets` (the family presets) so that they agree; a
setting that differs from the checkpoint's config.json fails naming the field, a tensor that
does not fit fails naming the tensor.
"""

from __future__ import annotations

from typing import Any

from mmscale.errors import CheckpointError
from mmscale.hf import load
from mmscale.hf.checkpoint import Checkpoint, read_preprocessor
from mmscale.hf.families import decoder_family, vision_fields
from mmscale.hf.mapping import connector_tensors, decoder_tensors, vision_tensors
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


def _prefix_of(ckpt: Checkpoint, suffix: str, what: str) -> str:
  """The part of the checkpoint's names before `suffix` (where a sub-model sits: 'model.',
  'model.language_model.', 'vision_model.', 'vision_tower.vision_model.', ...)."""
  found = [n[:-len(suffix)] for n in ckpt.names()
           if n.endswith(suffix) and "text_model." not in n]
  if not found:
    raise CheckpointError(f"{ckpt.path}: no {what} (no tensor named '...{suffix}'; read by "
                          f"{ckpt.field})")
  return found[0]


def check_fields(part: str, expected: dict, config, ckpt: Checkpoint) -> None:
  """Fails naming the first `model.<part>.<field>` that differs from what the checkpoint's
  config.json implies (e.g. an edited rope_theta would otherwise import silently)."""
  for key, want in expected.items():
    have = config[key]
    if isinstance(want, dict):
      have = {k: have[k] for k in want}
    if isinstance(want, tuple):  # a config read back from JSON holds lists
      have = tuple(have)
    if have != want:
      raise CheckpointError(f"{ckpt.path}: model.{part}.{key} = {have!r} but the checkpoint's "
                            f"config.json implies {want!r} (set it with mmscale.hf.presets)")


def decoder_names(ckpt: Checkpoint) -> tuple[str, str]:
  """(prefix of the text model, name of its output projection) in this checkpoint."""
  prefix = _prefix_of(ckpt, "embed_tokens.weight", "decoder")
  heads = [n for n in ckpt.names() if n.endswith("lm_head.weight")]
  return prefix, heads[0] if heads else "lm_head.weight"


@PART_LOADERS.register("decoder")
def load_decoder(model_config, ckpt: Checkpoint, params: dict) -> dict:
  """params['decoder'] (arrays or sharded ShapeDtypeStructs) -> the checkpoint's decoder, in
  the same shardings. Scanned decoders stack the layers on the leading axis."""
  hf_config = ckpt.config.get("text_config", ckpt.config)
  d = model_config.decoder
  check_fields("decoder", decoder_family(hf_config, ckpt.field).fields(hf_config), d, ckpt)
  prefix, lm_head = decoder_names(ckpt)
  top, per_layer = decoder_tensors(d, prefix, lm_head)
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
  ignored = ("rotary_emb.inv_freq",) + ((lm_head,) if d.tie_embeddings else ())
  load.check_unexpected(ckpt, used, (prefix, lm_head), ignored)
  return out




def starts_from_checkpoints(model_config) -> bool:
  """Whether any `model.init_from` part names a checkpoint directory."""
  return any(model_config.init_from.get(part, "") for part in PART_LOADERS)


def vision_depth(hf_depth: int, feature_layer: int) -> int:
  """The tower's depth when its features are encoder layer `feature_layer` (-1 = the last) of
  a checkpoint with `hf_depth` layers (transformers' hidden_states[feature_layer])."""
  return hf_depth + 1 + feature_layer


@PART_LOADERS.register("vit")
def load_vision(model_config, ckpt: Checkpoint, params: dict) -> dict:
  """params['vit'] -> the checkpoint's SigLIP or CLIP vision tower, in the same shardings."""
  hf = ckpt.config
  hf = hf.get("vision_config", hf) if "text_config" in hf else hf
  v = model_config.vit
  expected = vision_fields(hf, read_preprocessor(ckpt.path), ckpt.field)
  hf_depth = expected["depth"]
  expected["depth"] = vision_depth(hf_depth, model_config.init_from.vit_feature_layer)
  check_fields("vit", expected, v, ckpt)
  if v.posemb != "learned":
    raise CheckpointError(f"{ckpt.path}: model.vit.posemb must be 'learned' to take the "
                          "checkpoint's position embeddings")
  prefix = _prefix_of(ckpt, "embeddings.patch_embedding.weight", "vision tower")
  top, per_layer = vision_tensors(v, prefix)
  out = _copy_dicts(params)
  used = set()
  placed = [(t.path, t) for t in top] + [((f"block_{i}",) + t.path, t.at(i))
                                         for i in range(v.depth) for t in per_layer]
  for path, tensor in placed:
    _set(out, path, load.load_tensor(ckpt, tensor, _get(params, path, ckpt.path)))
    used.add(tensor.hf_name)
  # the final norm when not used, and the layers past the feature layer
  used.update(t.hf_name.format(i=i) for i in range(v.depth, hf_depth) for t in per_layer)
  ignored = ("post_layernorm.weight", "post_layernorm.bias", "position_ids")
  load.check_unexpected(ckpt, used, (prefix + "embeddings.", prefix + "encoder.",
                                     prefix + "pre_layrnorm.", prefix + "post_layernorm."),
                        ignored)
  return out


# projector_hidden_act values computing what the 'mlp' connector computes (tanh-approximate GELU)
CONNECTOR_ACTIVATIONS = ("gelu_pytorch_tanh", "gelu_new", "gelu_fast")


@PART_LOADERS.register("connector")
def load_connector(model_config, ckpt: Checkpoint, params: dict) -> dict:
  """params['connector'] ('mlp' connector) -> a LLaVA-style checkpoint's projector."""
  act = ckpt.config.get("projector_hidden_act")
  if model_config.connector.name != "mlp" or act not in CONNECTOR_ACTIVATIONS:
    raise CheckpointError(f"{ckpt.path}: a projector loads into the 'mlp' connector with a "
                          f"tanh-approximate GELU (got model.connector.name="
                          f"{model_config.connector.name!r}, projector_hidden_act={act!r})")
  prefix = _prefix_of(ckpt, "linear_1.weight", "LLaVA projector")
  out = _copy_dicts(params)
  for tensor in connector_tensors(prefix):
    _set(out, tensor.path, load.load_tensor(ckpt, tensor, _get(params, tensor.path, ckpt.path)))
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
