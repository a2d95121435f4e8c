"""A knowledge-density scaling point: model size x data arm x token budget (+ seed), one config.

  configs/scaling/point.py:size=s,arm=enriched,tokens=2457600,seed=0

Arguments (big_vision style, parsed by `mmscale.config.parse_arg`):
  size:      a SIZES preset: xs | s | m run on CPU; 1b | 7b are pod-scale (documented, not run here)
  arm:       an ARMS preset (a mixture over world arms) or one world arm name
  tokens:    the token budget; train.steps = tokens // (batch * seq_len), so arms of one
             comparison see the same number of (packed) tokens whatever their text length
  seed:      parameter-init and data-order seed
  vqa_share: weight of VQA examples added to every arm so that the eval's answer format is known
             (without it an arm of captions only never sees the question-answer format the
             eval asks in). The same share for all arms of a comparison keeps it a constant, not
             a confound; 0 turns it off. The `vqa` arm ignores it.
  batch:     global batch in rows (0 = the size preset's)
  res:       image resolution in px (0 = the size preset's); patches stay 16 px (the world's cell)
  connector: connector name ('' = the size preset's): mlp | avgpool | attnpool | cabstractor
  image_tokens: image tokens per image K (0 = one per patch)

Built on configs/world/tiny.py (same data, optimiser and eval settings); only the fields named
here change, so a point differs from the embedded default in exactly its coordinates.
"""

import importlib.util
import logging
import os

from mmscale.config import parse_arg

# Mixtures over the world's arms (docs/data_format.md). Names are the arms of the Caption First,
# VQA Second comparisons (docs/scaling.md); MM1 mixtures are caption : interleaved : text weights
# in percent.
ARMS = {
    "caption": {"caption": 1.0},
    "vqa": {"vqa": 1.0},
    "caption_vqa": {"caption": 0.5, "vqa": 0.5},
    "vqa_as_caption": {"vqa_as_caption": 1.0},
    "enriched": {"enriched": 1.0},
    "enriched_pairs": {"enriched": 0.5, "pairs": 0.5},
    "enriched_pairs_knowledge": {"enriched": 0.4, "pairs": 0.3, "knowledge": 0.3},
    "mm1_100_0_0": {"caption": 1.0},
    "mm1_50_50_0": {"caption": 0.5, "interleaved": 0.5},
    "mm1_45_45_10": {"caption": 0.45, "interleaved": 0.45, "text": 0.10},
    "mm1_33_33_33": {"caption": 1 / 3, "interleaved": 1 / 3, "text": 1 / 3},
}

# Model presets. xs/s/m: CPU (xs is the test size). 1b/7b: pod scale, for a real corpus
# (set data.world_dir or data.sources); `mesh` is the suggested layout, `batch`/`seq_len` the
# MM1-style global batch. Suggested slices: 1b on a v5e-64 / 8xH100 (fsdp=-1), 7b on a v5p-256
# / 32xH100 (fsdp=-1, tensor=4 on GPU nodes of 8).
SIZES = {
    "xs": dict(width=64, depth=2, heads=4, kv_heads=2, mlp_dim=128, vit_width=64, vit_depth=1,
               batch=16, seq_len=64, image_size=48),
    "s": dict(width=128, depth=3, heads=4, kv_heads=2, mlp_dim=512, vit_width=128, vit_depth=2,
              batch=32, seq_len=64, image_size=48),
    "m": dict(width=256, depth=4, heads=4, kv_heads=2, mlp_dim=1024, vit_width=256, vit_depth=4,
              batch=32, seq_len=64, image_size=48),
    "1b": dict(width=2048, depth=16, heads=16, kv_heads=8, mlp_dim=8192, vit_width=1024,
               vit_depth=24, vit_heads=16, batch=512, seq_len=2048, image_size=336, patch_size=14,
               connector="cabstractor", image_tokens=144, vocab_size=32000, dtype="bfloat16",
               remat="full", mesh={"data": 1, "fsdp": -1, "tensor": 1, "expert": 1}),
    "7b": dict(width=4096, depth=32, heads=32, kv_heads=8, mlp_dim=14336, vit_width=1024,
               vit_depth=24, vit_heads=16, batch=1024, seq_len=4096, image_size=336,
               patch_size=14, connector="cabstractor", image_tokens=144, vocab_size=32000,
               dtype="bfloat16", remat="full",
               mesh={"data": 1, "fsdp": -1, "tensor": 4, "expert": 1}),
}

# Mixture-of-experts sizes (docs/moe.md): a dense size plus `moe` = decoder MoE fields. The
# `-moe` CPU sizes keep the active parameters of their dense size (top-2 of experts half as wide
# as its MLP), so a dense vs MoE comparison is at equal active parameters. 3b-64e is MM1's
# 3B-64E class: 64 top-2 experts of the dense MLP width in every second layer (on a v5p-256 /
# 32xH100: expert=8, fsdp=-1).
MOE_SIZES = {
    "xs-moe": dict(SIZES["xs"], depth=2, moe=dict(moe_every=2, num_experts=4,
                                                   experts_per_token=2, moe_mlp_dim=64)),
    "s-moe": dict(SIZES["s"], depth=4, moe=dict(moe_every=2, num_experts=8, experts_per_token=2,
                                                 moe_mlp_dim=256)),
    "3b-64e": dict(width=2560, depth=32, heads=20, kv_heads=4, mlp_dim=6912, vit_width=1024,
                   vit_depth=24, vit_heads=16, batch=512, seq_len=4096, image_size=378,
                   patch_size=14, connector="cabstractor", image_tokens=144, vocab_size=32000,
                   dtype="bfloat16", remat="full",
                   mesh={"data": 1, "fsdp": -1, "tensor": 1, "expert": 8},
                   moe=dict(moe_every=2, num_experts=64, experts_per_token=2)),
}
SIZES.update(MOE_SIZES)


def _tiny_config():
  """configs/world/tiny.py, loaded by path so this file works from any working directory."""
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "world",
                      "tiny.py")
  spec = importlib.util.spec_from_file_location("mmscale_tiny_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(None)


def arm_mixture(arm: str, vqa_share: float) -> dict:
  """The arm's mixture with the shared VQA fraction folded in (weights sum to 1)."""
  base = dict(ARMS.get(arm, {arm: 1.0}))
  total = sum(base.values())
  if set(base) == {"vqa"} or vqa_share <= 0:
    return {k: v / total for k, v in base.items()}
  out = {k: (1 - vqa_share) * v / total for k, v in base.items()}
  out["vqa"] = out.get("vqa", 0.0) + vqa_share
  return out


def steps_for_budget(tokens: int, batch: int, seq_len: int) -> int:
  """Equal budgets are in tokens (text length differs by arm): one step = batch x seq_len."""
  return max(1, tokens // (batch * seq_len))


def get_config(arg=None):
  args = parse_arg(arg, size="s", arm="enriched", tokens=2457600, seed=0, vqa_share=0.05,
                   batch=0, res=0, connector="", image_tokens=0)
  size = SIZES[args.size]
  c = _tiny_config()
  c.seed = args.seed
  c.data.shuffle_seed = args.seed
  c.data.mixture = arm_mixture(args.arm, args.vqa_share)
  c.data.batch_size = args.batch or size["batch"]
  c.data.seq_len = size["seq_len"]

  image_size = args.res or size["image_size"]
  patch = size.get("patch_size", 16)
  patches = (image_size // patch) ** 2
  c.model.vit.update(image_size=image_size, patch_size=patch, width=size["vit_width"],
                     depth=size["vit_depth"], heads=size.get("vit_heads", 4),
                     mlp_dim=4 * size["vit_width"])
  c.model.connector.update(name=args.connector or size.get("connector", "mlp"),
                           num_tokens=args.image_tokens or size.get("image_tokens", patches),
                           hidden_dim=2 * size["width"])
  c.model.decoder.update(width=size["width"], depth=size["depth"], heads=size["heads"],
                         kv_heads=size["kv_heads"], mlp_dim=size["mlp_dim"],
                         vocab_size=size.get("vocab_size", c.model.decoder.vocab_size),
                         remat_policy=size.get("remat", "none"))
  c.model.decoder.update(size.get("moe", {}))
  c.model.dtype = size.get("dtype", "float32")
  if "mesh" in size:
    c.mesh.shape = size["mesh"]

  steps = steps_for_budget(args.tokens, c.data.batch_size, c.data.seq_len)
  c.train.update(steps=steps, checkpoint_every=max(1, min(500, steps)),
                 log_every=max(1, min(50, steps // 10 or 1)))
  c.optim.warmup_steps = min(c.optim.warmup_steps, max(1, steps // 10))
  logging.info("scaling point %s: %d tokens / (%d rows x %d) = %d steps (%d tokens trained)",
               arg, args.tokens, c.data.batch_size, c.data.seq_len, steps,
               steps * c.data.batch_size * c.data.seq_len)
  return c
