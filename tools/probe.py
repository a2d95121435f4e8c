"""Modality-balance probe of a trained run: centroid erasure and a TCCD alpha sweep on its VQA eval.

`python tools/probe.py --workdir=W --layers=1 --k=64 [--alphas=0,0.5,1,2 --beta=0.1
  --max_examples=N --calib_arms=vqa --calib_examples=2000 --out=DIR]`
Run from the repository root (a run's config holds data.world_dir relative to it). W and --out
may be local or in a bucket (`gs://...`). Writes, under `--out` (default
W/analysis/probe_l<layers>_k<k>):
  centroids.npz, centroids.json   per-modality, per-layer K-means centroids (+ fit metadata)
  probe.json                      erasure accuracies / drops / ratio and TCCD gains per qtype
  probe.png                       the plot
Centroids already in --out are reused unless --refit. See docs/analysis.md.
"""

from __future__ import annotations

import json
import sys
import time

import flax.linen as nn
import jax
from absl import flags

from mmscale import cli_flags, paths
from mmscale.analysis import centroids as centroids_lib
from mmscale.analysis import probe
from mmscale.analysis.plot import plot_probe
from mmscale.errors import MmscaleError
from mmscale.eval.loading import load_run



def define_flags(fv: flags.FlagValues) -> None:
  """Flags on `fv`, a holder of this tool's own (mmscale/cli_flags.py)."""
  flags.DEFINE_string("workdir", None, "the training run", flag_values=fv)
  flags.DEFINE_list("layers", None, "decoder blocks (0-based) whose output is erased, e.g. 1 or "
                    "0,1,2", flag_values=fv)
  flags.DEFINE_integer("k", None, "centroids per modality and layer", flag_values=fv)
  flags.DEFINE_list("alphas", ["0", "0.5", "1", "2"], "TCCD weights to sweep", flag_values=fv)
  flags.DEFINE_float("beta", 0.1, "TCCD plausibility cut-off", flag_values=fv)
  flags.DEFINE_integer("max_examples", 0, "eval questions (0 = all)", flag_values=fv)
  flags.DEFINE_string("calib_arms", "vqa", "world arms for calibration", flag_values=fv)
  flags.DEFINE_integer("calib_examples", 2000, "records per arm", flag_values=fv)
  flags.DEFINE_integer("max_points", 0, "K-means on at most this many points per modality "
                       "(0 = all)", flag_values=fv)
  flags.DEFINE_integer("seed", 0, "K-means seed", flag_values=fv)
  flags.DEFINE_integer("step", None, "checkpoint step (default latest)", flag_values=fv)
  flags.DEFINE_integer("batch_size", 0, "override eval.batch_size", flag_values=fv)
  flags.DEFINE_string("out", None, "output directory", flag_values=fv)
  flags.DEFINE_bool("refit", False, "refit even if centroids exist", flag_values=fv)
  flags.mark_flags_as_required(["workdir", "layers", "k"], flag_values=fv)


def main(argv: list[str]) -> None:
  args, _ = cli_flags.parse(define_flags, argv, doc=__doc__)
  try:
    layers = tuple(int(x) for x in args.layers)
    alphas = tuple(float(x) for x in args.alphas)
  except ValueError as e:
    cli_flags.usage_error(f"--layers takes integers and --alphas numbers ({e})")
  out = args.out or paths.join(
      args.workdir, "analysis", f"probe_l{'-'.join(map(str, layers))}_k{args.k}")
  try:
    ctx, step = load_run(args.workdir, step=args.step,
                         eval_overrides={"batch_size": args.batch_size or None})
    with jax.set_mesh(ctx.mesh), nn.logical_axis_rules(ctx.rules):
      start = time.time()
      if paths.exists(paths.join(out, "centroids.npz")) and not args.refit:
        cset = centroids_lib.CentroidSet.load(out)
        if cset.layers != layers or cset.k != args.k:
          raise MmscaleError(f"{out} holds layers {cset.layers} k {cset.k}; pass --refit")
        print(f"reusing centroids in {out}")
      else:
        cset = probe.fit_probe_centroids(
            ctx, layers, args.k, arms=tuple(args.calib_arms.split(",")),
            per_arm=args.calib_examples, seed=args.seed, max_points=args.max_points)
        cset.meta.update(step=step, workdir=paths.absolute(args.workdir))
        if jax.process_index() == 0:
          cset.save(out)
          # The default set TCCD decoding reads (eval.tccd_centroids = ""): the latest fit.
          cset.save(paths.join(args.workdir, "analysis"))
        print(f"fitted centroids in {time.time() - start:.1f}s: {cset.meta['points']} points")
      result = probe.run(ctx, cset, alphas=alphas, beta=args.beta,
                         max_examples=args.max_examples)
  except MmscaleError as e:
    sys.exit(f"error: {e}")
  result.update(step=step, command=" ".join(sys.argv), seconds=round(time.time() - start, 1))
  if jax.process_index() == 0:
    paths.write_text(paths.join(out, "probe.json"), json.dumps(result, indent=2))
    plot_probe(result, paths.join(out, "probe.png"))
  print(probe.format_report(result))
  print(f"results: {paths.join(out, 'probe.json')}, plot: {paths.join(out, 'probe.png')}")


if __name__ == "__main__":
  cli_flags.run(main)
