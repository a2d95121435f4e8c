"""The one schema of a run: every field and its default, and loading `path.py:arg` files.

Every run is one `ml_collections.ConfigDict`. `base_config()` holds every field and its default
(model, data pipeline, mesh, optimizer, training, evaluation); a field that is not in it is an
error, so a typo never silently becomes a default. Nothing else in mmscale holds a default of a
config field. `mmscale.spec.validate` checks a config once and resolves it into a `RunSpec`.
"""

from __future__ import annotations

import importlib.util
import os

import ml_collections

from mmscale.data.transforms import DEFAULT_MAX_IMAGE_PIXELS
from mmscale.errors import ConfigError
from mmscale.parallel.rules import DEFAULT_RULES


def base_config() -> ml_collections.ConfigDict:
  """The full schema with defaults; every other config starts from this."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.world_dir = "data/world"
  # SentencePiece .model, Hugging Face tokenizer.json, or a checkpoint directory holding one;
  # empty: <world_dir>/tokenizer.model
  c.data.tokenizer = ""
  c.data.mixture = ml_collections.ConfigDict({"caption": 1.0})
  c.data.seq_len = 64
  c.data.max_images_per_seq = 2
  c.data.pack = True
  c.data.batch_size = 32  # global batch, rows of seq_len
  c.data.shuffle_seed = 0
  c.data.max_skip_fraction = 0.01
  c.data.num_workers = 0
  c.data.sources = ml_collections.ConfigDict()  # name -> {"type": "records"|"tfds", ...}
  c.data.resize = "stretch"  # stretch | pad (keep aspect) | crop (centre)
  c.data.log_every_batches = 100  # realised mixture / packing / skip log interval (0 = never)
  c.data.read_threads = 2  # grain read threads per process (split among its batch shards)
  c.data.pack_rows = 0  # open rows per packing group (0 = the shard's batch rows, at least 16)
  c.data.max_image_pixels = DEFAULT_MAX_IMAGE_PIXELS  # larger images are skipped, not decoded
  c.data.skip_check_min_records = 100  # records read before max_skip_fraction is enforced

  c.model = ml_collections.ConfigDict()
  c.model.name = "mllm"
  c.model.dtype = "float32"
  c.model.param_dtype = "float32"
  # attention kernel of the ViT and the decoder (docs/attention.md): auto = splash on TPU, cuDNN
  # on GPU with a 16-bit dtype, else xla (the reference) | xla | splash | cudnn
  c.model.attention = "auto"
  c.model.vit = ml_collections.ConfigDict(dict(
      image_size=48, patch_size=16, width=128, depth=2, heads=4, mlp_dim=512,
      posemb="learned", final_norm=True,  # posemb: learned | sincos2d
      # CLIP's tower (docs/pretrained.md): a class token (dropped from the output), a LayerNorm
      # before the blocks, no patch bias, quick_gelu; norm_eps of every LayerNorm; the tower's
      # per-channel pixel normalisation on [0, 1] pixels (0.5 / 0.5 = the pipeline's [-1, 1])
      class_token=False, pre_norm=False, patch_bias=True, activation="gelu_tanh",
      norm_eps=1e-6, pixel_mean=(0.5, 0.5, 0.5), pixel_std=(0.5, 0.5, 0.5)))
  # hidden_dim 0 = the decoder width; depth = residual conv blocks per stage (cabstractor)
  c.model.connector = ml_collections.ConfigDict(dict(name="mlp", num_tokens=9, hidden_dim=256,
                                                     depth=1))
  # head_dim 0 = width // heads
  c.model.decoder = ml_collections.ConfigDict(dict(
      vocab_size=128, width=128, depth=3, heads=4, kv_heads=2, head_dim=0, mlp_dim=512,
      tie_embeddings=True, rope_theta=10000.0, scan_layers=True, remat_policy="none",
      z_loss=1e-4, dropout_rate=0.0,
      # pretrained families (docs/pretrained.md): RMSNorm epsilon, q/k/v biases (Qwen2), per-head
      # q/k RMSNorm (Qwen3), embeddings x sqrt(width) (mmscale's init; off for Llama/Qwen)
      norm_eps=1e-6, qkv_bias=False, qk_norm=False, scale_embeddings=True,
      # True: every token attends causally, image blocks and prompt prefixes too (ignores the
      # batch's mask_ar), as Hugging Face LLaVA-style models do; needed for an exact export
      causal_only=False))
  # RoPE variant (mmscale.models.layers.ROPE_SCALINGS): none | linear | llama3
  # Gemma 2 / 3 (docs/pretrained.md): RMSNorm x (1 + scale) with zero-centred scales; RMSNorm
  # also after attention and MLP ("sandwich"); the gated MLP's activation (layers.ACTIVATIONS:
  # silu | gelu_tanh | gelu | quick_gelu); attention scores x query_pre_attn_scalar^-0.5 (0 =
  # head_dim); tanh soft-capping of attention scores / final logits (0 = off); sliding-window
  # layers: window in key slots (0 = none), global_every N = the last of each N layers attends
  # globally (0 = all slide), rope_local_theta = the sliding layers' plain RoPE base (0 = the
  # global layers' rope_theta and rope_scaling)
  c.model.decoder.update(dict(
      norm_scale_plus_one=False, post_norms=False, mlp_activation="silu",
      query_pre_attn_scalar=0.0, attn_logit_softcap=0.0, final_logit_softcap=0.0,
      sliding_window=0, global_every=0, rope_local_theta=0.0))
  c.model.decoder.rope_scaling = ml_collections.ConfigDict(dict(
      type="none", factor=1.0, low_freq_factor=1.0, high_freq_factor=4.0,
      original_max_position=8192))
  # Hugging Face checkpoint directories (config.json + safetensors) the params start from on a
  # fresh start; "" = random init. The connector (the 'mlp' one) can only come from a LLaVA-style
  # checkpoint's projector, e.g. an mmscale export (docs/pretrained.md).
  # vit_feature_layer: the vision checkpoint's encoder layer the tower ends at (-1 = the last;
  # -2 = the penultimate, LLaVA-1.5's CLIP features: model.vit.depth is then one less)
  c.model.init_from = ml_collections.ConfigDict(dict(decoder="", vit="", connector="",
                                                     vit_feature_layer=-1))
  # Mixture of experts (docs/moe.md): moe_every 0 = dense; N = every Nth layer (the last of each
  # N) is MoE. moe_mlp_dim 0 = mlp_dim. moe_dispatch: dropless | capacity. Loss weights: MM1's.
  c.model.decoder.update(dict(
      moe_every=0, num_experts=8, experts_per_token=2, moe_mlp_dim=0, moe_dispatch="dropless",
      capacity_factor=1.25, moe_norm_topk=True, load_balance_loss=0.01, router_z_loss=0.001))

  c.mesh = ml_collections.ConfigDict()
  c.mesh.shape = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1, "expert": 1})
  c.mesh.rules = DEFAULT_RULES

  c.optim = ml_collections.ConfigDict(dict(
      lr=1e-3, lr_rule="constant", warmup_steps=100, end_lr_fraction=0.1, weight_decay=0.1,
      b1=0.9, b2=0.95, eps=1e-8, grad_clip=1.0, grad_accum_steps=1,
      # training from pretrained parts (docs/pretrained.md): regexes fully matching parameter
      # paths like 'vit/block_0/attn/query/kernel' -> frozen; (regex, lr multiplier) pairs
      freeze=(), lr_multipliers=()))

  c.train = ml_collections.ConfigDict(dict(
      steps=1000, log_every=50, checkpoint_every=250, keep_checkpoints=3, async_checkpoint=True,
      eval_every=0, peak_flops_per_device=0.0,
      profile_steps=0,   # steps traced by jax.profiler into W/profile (0 = none)
      profile_start=5,   # steps run before the trace starts (compilation stays out of it)
      # the loss's float32 logits per device per block, MiB (models/fused_loss.py): a bound on
      # their memory with a large vocabulary (0 = all loss positions in one block)
      loss_block_mib=0.0,
      # divergence guard (mmscale/train/guard.py): a loss above factor x the median of the last
      # `window` steps (0 = off; a median below `floor` counts as the floor, so a loss that has
      # converged near 0 may move by its noise), or a gradient norm of 0 for this many steps in a
      # row (0 = off)
      divergence_loss_factor=10.0, divergence_window=20, divergence_loss_floor=0.1,
      divergence_zero_grad_steps=5,
      # resuming with a changed data section: True restarts the data order, False refuses
      restart_data=False))

  c.eval = ml_collections.ConfigDict(dict(
      batch_size=64,            # rows per evaluation batch (rounded to a multiple of data x fsdp)
      max_examples=0,           # questions / captions / pairs per evaluator (0 = all)
      max_decode_len=4,         # generated tokens per short answer
      loss_batches=4,           # batches for held-out loss (0 = all)
      evals=(),                 # evaluators in training and the CLI (empty = the default set)
      every={},                 # evaluator -> steps between runs in training (else eval_every)
      temperature=0.0,          # 0 = greedy; > 0 samples
      top_p=1.0,                # nucleus sampling mass (with temperature > 0)
      seed=0,                   # sampling and few-shot support selection
      caption_max_len=24,       # generated tokens per caption
      fewshot_shots=(0, 4, 8),  # in-context example counts
      fewshot_max_len=0,        # few-shot prompt limit in tokens (0 = none); shots drop to fit
      fewshot_queries=512,      # query questions per shot count (0 = as many as max_examples)
      pairs_records=1024,       # pair records the multi-image evaluator reads (0 = max_examples)
      text_docs=64,             # held-out text documents for text perplexity
      vqa_json="",              # local VQA JSON file for the `vqa_file` evaluator
      caption_json="",          # local COCO-style caption JSON for the `caption_file` evaluator
      mc_json="",               # local multiple-choice JSON for `ranked_file` / `statement_file`
      image_root="",            # images of the local files (default: the JSON file's directory)
      tccd_alpha=0.0,           # text-centroid contrastive decoding weight (0 = off)
      tccd_beta=0.1,            # TCCD plausibility cut-off: keep p >= beta * max p
      tccd_centroids="",        # centroids.npz of tools/probe.py ("" = W/analysis/centroids.npz)
      tccd_layers=(),           # decoder layers erased in the TCCD reference (empty = the set's)
  ))
  return c


def call_config_file(spec: str, function: str = "get_config", field: str = "config"):
  """Imports `path/to/file.py[:arg]` and returns `function(arg)` (big_vision's config files)."""
  path, _, arg = spec.partition(":")
  if not os.path.exists(path):
    raise ConfigError(field, f"file '{path}' does not exist")
  module_spec = importlib.util.spec_from_file_location(f"mmscale_user_{field}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, function):
    raise ConfigError(field, f"'{path}' defines no {function}(arg)")
  return getattr(module, function)(arg or None)


def load_config(spec: str) -> ml_collections.ConfigDict:
  """Loads `path/to/config.py[:arg]` by calling its `get_config(arg)`."""
  return call_config_file(spec)


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses big_vision-style `key=value,key2=value2` config arguments over typed defaults."""
  out = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, sep, value = item.partition("=")
    if not sep or key not in defaults:
      raise ConfigError(f"config argument '{key}'", f"expected one of {sorted(defaults)} as key=value")
    out[key] = _typed_like(defaults[key], value, f"config argument '{key}'")
  return out


def _typed_like(default, value: str, field: str):
  """`value` converted to the type of `default` (bools: 1/true/0/false)."""
  if isinstance(default, bool):
    if value.lower() not in ("1", "true", "0", "false"):
      raise ConfigError(field, f"expected true or false, got '{value}'")
    return value.lower() in ("1", "true")
  try:
    return type(default)(value)
  except ValueError as e:
    raise ConfigError(field, f"expected a value of type {type(default).__name__}, got '{value}'") from e


# Fields whose keys are user-chosen names (arms, sources, mesh axes): checked as a whole.
_OPEN_FIELDS = ("data.mixture", "data.sources", "mesh.shape", "eval.every")


def flat_keys(cfg, prefix=""):
  """Dotted names of every leaf field (open fields such as data.mixture count as one leaf)."""
  for key, value in cfg.items():
    name = f"{prefix}{key}"
    if isinstance(value, ml_collections.ConfigDict) and name not in _OPEN_FIELDS:
      yield from flat_keys(value, name + ".")
    else:
      yield name


def check_schema(config) -> None:
  """Every field of `config` is one of `base_config()`'s (`ConfigError` names the first that is
  not): the part of validation that needs no devices (sweep dry runs check it per point)."""
  known = set(flat_keys(base_config()))
  for name in flat_keys(config):
    if name not in known:
      raise ConfigError(name, "unknown field (not in mmscale.config.base_config())")


def tokenizer_path(config) -> str:
  return config.data.tokenizer or os.path.join(config.data.world_dir, "tokenizer.model")
