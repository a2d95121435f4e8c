"""MM1 mini-ablation (MM1 §3.2, scaled to the knowledge world): image resolution and image-token
count vs connector type, at one equal token budget on the MM1 45:45:10 mixture.

  python -m mmscale.sweep --sweep=configs/sweeps/mm1_connector.py --sweep_dir=runs/mm1_connector

Grid: res 48 | 96 px (9 | 36 patches of 16 px), K = 4 | 9 image tokens, connector avgpool |
attnpool | cabstractor (MM1: resolution and K matter most, the connector type little). K stays
<= 9 so two images fit the 64-token rows. Arguments: `seeds` (default 1), `tokens` (budget,
default 2457600), `arm` (default mm1_45_45_10), `size` (default s).
"""

from mmscale.config import parse_arg

RESOLUTIONS = (48, 96)
IMAGE_TOKENS = (4, 9)
CONNECTORS = ("avgpool", "attnpool", "cabstractor")


def get_sweep(arg=None):
  args = parse_arg(arg, seeds=1, tokens=2457600, arm="mm1_45_45_10", size="s")
  return [{"name": f"{conn}_res{res}_k{k}_seed{seed}",
           "config": (f"configs/scaling/point.py:size={args.size},arm={args.arm},"
                      f"tokens={args.tokens},seed={seed},res={res},connector={conn},"
                      f"image_tokens={k}"),
           "tags": {"group": "mm1_connector"}}
          for res in RESOLUTIONS for k in IMAGE_TOKENS for conn in CONNECTORS
          for seed in range(args.seeds)]
