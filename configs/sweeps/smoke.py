"""Two tiny points for tests and a first try: caption vs vqa, size xs, 10 steps of 8 x 64 tokens.

  python -m mmscale.sweep --sweep=configs/sweeps/smoke.py --sweep_dir=runs/smoke \
      --override=data.world_dir=data/world

Argument `steps` (default 10) sets the token budget (steps x 8 rows x 64 tokens).
"""

from mmscale.config import parse_arg

ARMS = ("caption", "vqa")


def get_sweep(arg=None):
  args = parse_arg(arg, steps=10)
  tokens = args.steps * 8 * 64
  return [{"name": f"{arm}_xs_seed0",
           "config": f"configs/scaling/point.py:size=xs,arm={arm},tokens={tokens},seed=0,batch=8",
           "overrides": {"train.peak_flops_per_device": 1e11, "eval.max_examples": 64,
                         "eval.batch_size": 32, "eval.loss_batches": 1},
           "tags": {"group": "smoke"}}
          for arm in ARMS]
