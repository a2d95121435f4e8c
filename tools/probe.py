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

import json
import os
import sys
import time

import flax.linen as nn
import jax
from absl import app, flags

from mmscale.analysis import centroids as centroids_lib
from mmscale.analysis import probe
from mmscale.analysis.plot import plot_probe
from mmscale.errors import MmscaleError
from mmscale.eval.loading import load_run

_WORKDIR = flags.DEFINE_string("workdir", None, "the training run", required=True)
_LAYERS = flags.DEFINE_list("layers", None, "decoder blocks (0-based) whose output is erased, "
                            "e.g. 1 or 0,1,2", required=True)
_K = flags.DEFINE_integer("k", None, "centroids per modality and layer", required=True)
_ALPHAS = flags.DEFINE_list("alphas", ["0", "0.5", "1", "2"], "TCCD weights to sweep")
_BETA = flags.DEFINE_float("beta", 0.1, "TCCD plausibility cut-off")
_MAX_EXAMPLES = flags.DEFINE_integer("max_examples", 0, "eval questions (0 = all)")
_CALIB_ARMS = flags.DEFINE_string("calib_arms", "vqa", "world arms for calibration")
_CALIB_EXAMPLES = flags.DEFINE_integer("calib_examples", 2000, "records per arm")
_MAX_POINTS = flags.DEFINE_integer("max_points", 0, "K-means on at most this many points per "
                                   "modality (0 = all)")
_SEED = flags.DEFINE_integer("seed", 0, "K-means seed")
_STEP = flags.DEFINE_integer("step", None, "checkpoint step (default latest)")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 0, "override eval.batch_size")
_OUT = flags.DEFINE_string("out", None, "output directory")
_REFIT = flags.DEFINE_bool("refit", False, "refit even if centroids exist")


def main(argv):
  del argv
  try:
    layers = tuple(int(x) for x in _LAYERS.value)
    alphas = tuple(float(x) for x in _ALPHAS.value)
  except ValueError as e:
    sys.exit(f"error: --layers takes integers and --alphas numbers ({e})")
  args = type("Args", (), dict(
      workdir=_WORKDIR.value, layers=layers, k=_K.value, alphas=alphas, beta=_BETA.value,
      max_examples=_MAX_EXAMPLES.value, calib_arms=_CALIB_ARMS.value,
      calib_examples=_CALIB_EXAMPLES.value, max_points=_MAX_POINTS.value, seed=_SEED.value,
      step=_STEP.value, out=_OUT.value, refit=_REFIT.value))
  out = args.out or os.path.join(
      args.workdir, "analysis", f"probe_l{'-'.join(map(str, args.layers))}_k{args.k}")
  try:
    ctx, step = load_run(args.workdir, step=args.step,
                         eval_overrides={"batch_size": _BATCH_SIZE.value or None})
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
  app.run(main)
