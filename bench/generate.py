"""Decode speed with and without the KV cache at the reference config.

Reference config (docs/performance.md): 64x64 images, patch 8 (64 image tokens, mlp connector),
ViT 4 x 256, decoder 4 x 256 with 4 heads, vocab 8192; random init (speed does not depend on the
weights). Prompts are [BOS, 64 image tokens, --prompt_text text tokens]; each call generates
--new_tokens tokens for --batch rows (greedy). Reported: generated tokens/s of the whole call
(prefill included) after one compile-and-warm-up call, the median over --repeats calls.
Usage: `python bench/generate.py [--batch=8] [--new_tokens=32] [--prompt_text=32]
[--dtype=float32]`; prints one JSON line per mode.
"""

from __future__ import annotations

import json
import statistics
import time

import flax.linen as nn
import jax
import numpy as np
from absl import flags

from mmscale import cli_flags
from mmscale.config import base_config
from mmscale.data.batch import BatchLayout, one_per_row
from mmscale.eval import generate
from mmscale.models.registry import build_model
from mmscale.testing import numpy_init


def reference_model_config(dtype: str):
  c = base_config().model
  c.dtype = dtype
  c.vit.update(image_size=64, patch_size=8, width=256, depth=4, heads=4, mlp_dim=1024)
  c.connector.update(name="mlp", num_tokens=64, hidden_dim=256)
  c.decoder.update(vocab_size=8192, width=256, depth=4, heads=4, kv_heads=4, mlp_dim=1024)
  return c


def prompt_batch(model_config, rows: int, text_len: int, seed: int = 0) -> dict:
  """Prompts [BOS, image, text] of one length, left-padded by the batch builder."""
  rng = np.random.default_rng(seed)
  k, size = model_config.connector.num_tokens, model_config.vit.image_size
  examples = []
  for _ in range(rows):
    tokens = rng.integers(4, model_config.decoder.vocab_size, 1 + k + text_len).astype(np.int32)
    mask_ar = np.ones_like(tokens)
    mask_ar[2:1 + k] = 0
    examples.append({"tokens": tokens, "mask_ar": mask_ar,
                     "images": rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32),
                     "image_positions": np.arange(1, 1 + k, dtype=np.int32)})
  layout = BatchLayout(seq_len=1 + k + text_len, max_images=1, tokens_per_image=k,
                       image_size=size)
  return one_per_row(examples, layout, pad="left")


def time_calls(fn, repeats: int) -> float:
  jax.block_until_ready(fn())  # compile + warm up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def define_flags(fv: flags.FlagValues) -> None:
  """Flags on `fv`, a holder of this benchmark's own (mmscale/cli_flags.py)."""
  flags.DEFINE_integer("batch", 8, "prompt rows", flag_values=fv)
  flags.DEFINE_integer("new_tokens", 32, "generated tokens per row", flag_values=fv)
  flags.DEFINE_integer("prompt_text", 32, "text tokens after the image in each prompt",
                       flag_values=fv)
  flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "compute dtype", flag_values=fv)
  flags.DEFINE_integer("repeats", 3, "timed calls per mode (the median is reported)",
                       flag_values=fv)


def main(argv: list[str]) -> None:
  args, _ = cli_flags.parse(define_flags, argv, doc=__doc__)
  cfg = reference_model_config(args.dtype)
  model = build_model(cfg)
  prompt = prompt_batch(cfg, args.batch, args.prompt_text)
  params = jax.device_put(nn.meta.unbox(numpy_init(model, prompt)["params"]))
  prompt = jax.device_put(prompt)
  for use_cache in (True, False):
    seconds = time_calls(lambda: generate.generate(  # pylint: disable=cell-var-from-loop
        model, params, prompt, max_new_tokens=args.new_tokens, use_cache=use_cache), args.repeats)
    print(json.dumps({
        "mode": "kv_cache" if use_cache else "recompute", "device": jax.devices()[0].device_kind,
        "dtype": args.dtype, "batch": args.batch, "prompt_len": int(prompt["tokens"].shape[1]),
        "new_tokens": args.new_tokens, "seconds": round(seconds, 4),
        "tokens_per_s": round(args.batch * args.new_tokens / seconds, 1)}))


if __name__ == "__main__":
  cli_flags.run(main)
