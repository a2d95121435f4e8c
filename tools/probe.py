"""Modality-balance probe of a trained run: centroid erasure and a TCCD alpha sweep on its VQA eval.

`python tools/probe.py --workdir=W --layers=1 --k=64 [--alphas=0,0.5,1,2 --beta=0.1
  --max_examples=N --calib_arms=vqa --calib_examples=2000 --out=DIR]`
Run from the repository root (a run's config holds data.world_dir relative to it). Writes, under
`--out` (default W/analysis/probe_l<layers>_k<k>):
  centroids.npz, centroids.json   per-modality, per-layer K-means centroids (+ fit metadata)
  probe.json                      erasure accuracies / drops / ratio and TCCD gains per qtype
  probe.png                       the plot
Centroids already in --out are reused unless --refit. See docs/analysis.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import flax.linen as nn
import jax

from mmscale.analysis import centroids as centroids_lib
from mmscale.analysis import probe, workdir
from mmscale.analysis.plot import plot_probe
from mmscale.errors import MmscaleError


def _ints(text):
  return tuple(int(x) for x in text.split(",") if x)


def _floats(text):
  return tuple(float(x) for x in text.split(",") if x)


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--layers", type=_ints, required=True,
                      help="decoder blocks (0-based) whose output is erased, e.g. 1 or 0,1,2")
  parser.add_argument("--k", type=int, required=True, help="centroids per modality and layer")
  parser.add_argument("--alphas", type=_floats, default=(0.0, 0.5, 1.0, 2.0))
  parser.add_argument("--beta", type=float, default=0.1)
  parser.add_argument("--max_examples", type=int, default=0, help="eval questions (0 = all)")
  parser.add_argument("--calib_arms", default="vqa", help="world arms for calibration")
  parser.add_argument("--calib_examples", type=int, default=2000, help="records per arm")
  parser.add_argument("--max_points", type=int, default=0,
                      help="K-means on at most this many points per modality (0 = all)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default latest)")
  parser.add_argument("--batch_size", type=int, default=0, help="override eval.batch_size")
  parser.add_argument("--out", default=None)
  parser.add_argument("--refit", action="store_true", help="refit even if centroids exist")
  args = parser.parse_args()
  out = args.out or os.path.join(
      args.workdir, "analysis", f"probe_l{'-'.join(map(str, args.layers))}_k{args.k}")
  try:
    ctx, step = workdir.load_context(args.workdir, args.step, args.batch_size or None)
    with jax.set_mesh(ctx.mesh), nn.logical_axis_rules(ctx.rules):
      start = time.time()
      if os.path.exists(os.path.join(out, "centroids.npz")) and not args.refit:
        cset = centroids_lib.CentroidSet.load(out)
        if cset.layers != args.layers or cset.k != args.k:
          raise MmscaleError(f"{out} holds layers {cset.layers} k {cset.k}; pass --refit")
        print(f"reusing centroids in {out}")
      else:
        cset = probe.fit_probe_centroids(
            ctx, args.layers, args.k, arms=tuple(args.calib_arms.split(",")),
            per_arm=args.calib_examples, seed=args.seed, max_points=args.max_points)
        cset.meta.update(step=step, workdir=os.path.abspath(args.workdir))
        if jax.process_index() == 0:
          cset.save(out)
          # The default set TCCD decoding reads (eval.tccd_centroids = ""): the latest fit.
          cset.save(os.path.join(args.workdir, "analysis"))
        print(f"fitted centroids in {time.time() - start:.1f}s: {cset.meta['points']} points")
      result = probe.run(ctx, cset, alphas=args.alphas, beta=args.beta,
                         max_examples=args.max_examples)
  except MmscaleError as e:
    sys.exit(f"error: {e}")
  result.update(step=step, command=" ".join(sys.argv), seconds=round(time.time() - start, 1))
  if jax.process_index() == 0:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "probe.json"), "w") as f:
      json.dump(result, f, indent=2)
    plot_probe(result, os.path.join(out, "probe.png"))
  print(probe.format_report(result))
  print(f"results: {os.path.join(out, 'probe.json')}, plot: {os.path.join(out, 'probe.png')}")


if __name__ == "__main__":
  main()
