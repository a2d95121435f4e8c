"""`python -m mmscale.generate --workdir=W --image=PATH [--image=PATH2] --prompt="..."`.

One-off generation from a trained run: the config is W/config.json, params the latest (or
--step) checkpoint, or an exported params directory (--params=EXPORT_DIR, whose config.json is
used when W has none); W, EXPORT_DIR and the images may be local or `gs://...` paths. Images
come first, then the prompt text, as in training (a question after an image joins the image's
prefix block). Sampling: --temperature, --top_p, --seed.
Text-centroid contrastive decoding (mmscale/eval/contrastive.py): --tccd_alpha=A (0 = off),
--tccd_beta, --tccd_centroids (default W/analysis/centroids.npz, written by tools/probe.py).
"""

from __future__ import annotations

import dataclasses
import logging
import sys

import flax.linen as nn
import jax
from absl import flags

from mmscale import cli_flags, paths
from mmscale.data.batch import one_per_row
from mmscale.data.transforms import SkipExample, builder_for
from mmscale.errors import DataError, MmscaleError
from mmscale.eval import contrastive, generate
from mmscale.eval.loading import load_run


def define_flags(fv: flags.FlagValues) -> None:
  """Flags on `fv`, a holder of this command's own (mmscale/cli_flags.py)."""
  flags.DEFINE_string("workdir", None, "training workdir (config.json, checkpoints/)",
                      flag_values=fv)
  flags.DEFINE_string("params", None, "exported params directory (tools/export.py)",
                      flag_values=fv)
  flags.DEFINE_integer("step", None, "checkpoint step (default: latest)", flag_values=fv)
  flags.DEFINE_multi_string("image", [], "image file(s), PNG or JPEG, in prompt order",
                            flag_values=fv)
  flags.DEFINE_string("prompt", "", "text after the images", flag_values=fv)
  flags.DEFINE_integer("max_new_tokens", 32, "generated tokens at most", flag_values=fv)
  flags.DEFINE_float("temperature", 0.0, "0 = greedy", flag_values=fv)
  flags.DEFINE_float("top_p", 1.0, "nucleus mass when sampling", flag_values=fv)
  flags.DEFINE_integer("seed", 0, "sampling seed", flag_values=fv)
  flags.DEFINE_float("tccd_alpha", 0.0, "TCCD weight (0 = plain decoding)", flag_values=fv)
  flags.DEFINE_float("tccd_beta", 0.1, "TCCD plausibility cut-off in [0, 1]", flag_values=fv)
  flags.DEFINE_string("tccd_centroids", "", "TCCD centroids.npz (tools/probe.py; default "
                      "W/analysis/centroids.npz)", flag_values=fv)


def build_record(image_paths: list[str], prompt: str) -> dict:
  """A prompt record: the images (local or `gs://...` files), then the prompt text (no loss).
  Missing files raise."""
  images = []
  for path in image_paths:
    if not paths.is_file(path):
      raise DataError(f"image file {path} not found")
    images.append(paths.read_bytes(path))
  segments = [{"image": i} for i in range(len(images))]
  if prompt:
    segments.append({"text": prompt, "loss": False})
  return {"id": "prompt", "kind": "vqa", "images": images, "segments": segments, "meta": {}}


def run(workdir: str | None, params_dir: str | None, step: int | None, image_paths: list[str],
        prompt: str, *, max_new_tokens: int, temperature: float, top_p: float,
        seed: int, tccd_alpha: float = 0.0, tccd_beta: float = 0.1,
        tccd_centroids: str = "") -> str:
  """The generated text (stops at EOS); tccd_alpha != 0 decodes with TCCD (`eval.tccd_*`)."""
  record = build_record(image_paths, prompt)
  ctx, _ = load_run(workdir, step=step, params_dir=params_dir, eval_overrides=dict(
      batch_size=1, tccd_alpha=tccd_alpha, tccd_beta=tccd_beta, tccd_centroids=tccd_centroids))
  tok = ctx.tokenizer
  try:
    example = builder_for(ctx.config.data, ctx.layout, tok)(record, prompt_only=True)
  except SkipExample as e:
    raise DataError(f"cannot use the image(s) {image_paths}: {e}") from e
  layout = dataclasses.replace(ctx.layout, max_images=max(1, len(example["images"])))
  batch = one_per_row([example] * ctx.rows_per_batch(), layout,
                      length=len(example["tokens"]), pad="left")
  decoding = contrastive.decoding(ctx)  # the plain model, or TCCD's two passes
  with jax.set_mesh(ctx.mesh), nn.logical_axis_rules(ctx.rules):
    out = generate.generate(prompt=ctx.to_global(batch), max_new_tokens=max_new_tokens,
                            temperature=temperature, top_p=top_p, stop_ids=(tok.eos_id,),
                            pad_id=tok.pad_id, valid_vocab=tok.vocab_size,
                            rng=jax.random.key(seed), **decoding)
  ids = generate.cut_at_stop(ctx.to_host(out)[:1], (tok.eos_id, tok.pad_id))[0]
  return tok.decode(ids)


def main(argv: list[str]) -> None:
  fv, _ = cli_flags.parse(define_flags, argv, doc=__doc__)
  logging.getLogger().setLevel(logging.WARNING)
  try:
    text = run(fv.workdir, fv.params, fv.step, fv.image, fv.prompt,
               max_new_tokens=fv.max_new_tokens, temperature=fv.temperature, top_p=fv.top_p,
               seed=fv.seed, tccd_alpha=fv.tccd_alpha, tccd_beta=fv.tccd_beta,
               tccd_centroids=fv.tccd_centroids)
  except MmscaleError as e:
    sys.exit(f"error: {e}")
  print(text)

