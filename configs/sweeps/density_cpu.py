"""The Caption First, VQA Second (arXiv 2604.13054) reproduction on CPU: every data arm x 3 seeds
at equal token budgets, size s (results: docs/results/knowledge_world.md, on the `relations` world
at three budgets; docs/results/knowledge_world_grid.md, the first world at one budget).

  python -m mmscale.sweep --sweep=configs/sweeps/density_cpu.py --sweep_dir=runs/density_cpu
  python -m mmscale.sweep --sweep=configs/sweeps/density_cpu.py:budgets=614400+2457600,sizes=s+m \
      --sweep_dir=runs/density_cpu_ladder     # a compute ladder for the per-arm scaling fits

Arguments: `arms` ('+'-separated ARMS of configs/scaling/point.py; default the seven comparison
arms), `seeds` (count, default 3), `budgets` ('+'-separated token budgets; default 2457600 =
1,200 steps of 32 x 64, the embedded default's length), `sizes` ('+'-separated), `vqa_share`
(default 0.05, the same for every arm so the eval's answer format is known to all and is no
confound; see configs/scaling/point.py). Groups: 'format' (caption, vqa,
caption_vqa, vqa_as_caption, enriched: does VQA add beyond captions?) and 'density' (enriched,
enriched_pairs, enriched_pairs_knowledge: does density raise results?); enriched is in both.
"""

from mmscale.config import parse_arg

FORMAT = ("caption", "vqa", "caption_vqa", "vqa_as_caption", "enriched")
DENSITY = ("enriched_pairs", "enriched_pairs_knowledge")


def get_sweep(arg=None):
  args = parse_arg(arg, arms="+".join(FORMAT + DENSITY), seeds=3, budgets="2457600", sizes="s",
                   vqa_share=0.05)
  points = []
  for size in args.sizes.split("+"):
    for tokens in (int(b) for b in args.budgets.split("+")):
      for arm in args.arms.split("+"):
        for seed in range(args.seeds):
          points.append({
              "name": f"{arm}_{size}_{tokens}_seed{seed}",
              "config": (f"configs/scaling/point.py:size={size},arm={arm},tokens={tokens},"
                         f"seed={seed},vqa_share={args.vqa_share}"),
              "tags": {"group": "format" if arm in FORMAT else "density"}})
  return points
