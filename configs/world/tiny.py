"""The embedded default: a tiny MLLM on the knowledge world, trained on 2 CPU cores in minutes.

Arguments (big_vision style, `configs/world/tiny.py:mix=enriched,steps=500`):
  mix:   a mixture preset of MIXTURES, or one arm name (docs/data_format.md lists the arms)
  size:  s | m   model size preset
  steps: train steps

Why these sizes: 48 px images on a 3 x 3 grid of 16 px cells with 16 px patches make every object
exactly one image token, which is what lets a tiny model bind colour, shape and position within
minutes on CPU (with patches smaller than a cell every object is split across several tokens, and
binding is what a tiny model fails to learn first).
"""

from mmscale.config import base_config, parse_arg
from mmscale.errors import ConfigError

MIXTURES = {
    # Captions teach what is in the image; a share of VQA teaches the answer format the eval uses.
    "default": {"enriched": 0.6, "vqa": 0.4},
}

SIZES = {
    "s": dict(width=128, depth=3, heads=4, kv_heads=2, mlp_dim=512, vit_width=128, vit_depth=2),
    "m": dict(width=256, depth=4, heads=4, kv_heads=2, mlp_dim=1024, vit_width=256, vit_depth=4),
}


def get_config(arg=None):
  args = parse_arg(arg, mix="default", size="s", steps=1200)
  c = base_config()
  c.data.world_dir = "data/world"
  c.data.mixture = MIXTURES.get(args.mix, {args.mix: 1.0})
  c.data.seq_len = 64
  c.data.max_images_per_seq = 2
  c.data.batch_size = 32

  if args.size not in SIZES:
    raise ConfigError("config argument 'size'", f"expected one of {sorted(SIZES)}, got '{args.size}'")
  size = SIZES[args.size]
  c.model.vit.update(image_size=48, patch_size=16, width=size["vit_width"],
                     depth=size["vit_depth"], heads=4, mlp_dim=4 * size["vit_width"])
  c.model.connector.update(name="mlp", num_tokens=9, hidden_dim=2 * size["width"])
  c.model.decoder.update(vocab_size=128, width=size["width"], depth=size["depth"],
                         heads=size["heads"], kv_heads=size["kv_heads"], mlp_dim=size["mlp_dim"])

  c.optim.update(lr=1e-3, warmup_steps=100)
  c.train.update(steps=args.steps, log_every=50, checkpoint_every=500, eval_every=0)
  # Room for the longest world answer (4 tokens: `above and left of` in a `which`-form world).
  c.eval.update(batch_size=128, max_decode_len=5)
  return c
