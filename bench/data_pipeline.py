"""Data-pipeline speed at the reference config: examples/s, tokens/s, packing efficiency.

Reference config (docs/performance.md): 64x64 images, patch 8 -> 64 image tokens per image, text
up to 128 tokens, batch 16 rows of seq_len 192 (so at most 2 images per row). The data is a
knowledge world built with image_size 64 on a 4x4 grid (built once into --world_dir), mixed
caption : interleaved : text = 45 : 45 : 10 as in MM1. Each measured batch pays for the whole
host path: ArrayRecord read, msgpack decode, PNG decode + resize + normalise, SentencePiece
tokenisation, first-fit packing and batching.

  python bench/data_pipeline.py [--batches=60] [--num_workers=0] [--train_tokens_per_s=3000]

`--train_tokens_per_s` is what the reference train step consumes (sequence positions per second,
16 x 192 per step); the ratio printed is how many such trainers this pipeline could feed.
"""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ml_collections  # noqa: E402
from absl import flags  # noqa: E402

from mmscale import cli_flags  # noqa: E402
from mmscale.data import pipeline  # noqa: E402
from mmscale.data import tokenizer as tokenizer_lib  # noqa: E402
from mmscale.data.batch import BatchLayout  # noqa: E402
from mmscale.data.world import build_world  # noqa: E402
from mmscale.data.world_spec import WorldSpec  # noqa: E402
from mmscale.testing import data_config  # noqa: E402

IMAGE_SIZE, PATCH, SEQ_LEN, BATCH = 64, 8, 192, 16
NUM_IMAGE_TOKENS = (IMAGE_SIZE // PATCH) ** 2


def ensure_world(world_dir: str, num_scenes: int) -> str:
  if not os.path.exists(os.path.join(world_dir, "world.json")):
    t = time.time()
    build_world(world_dir, num_scenes=num_scenes, num_eval_scenes=50, seed=0,
                spec=WorldSpec(image_size=IMAGE_SIZE, grid=4))
    print(f"built world in {world_dir} ({time.time() - t:.1f} s)")
  return world_dir


def configs(args) -> tuple[ml_collections.ConfigDict, BatchLayout]:
  """The schema's data section with the benchmark's values, and the batch layout."""
  data = data_config(
      world_dir=args.world_dir, mixture={"caption": 45.0, "interleaved": 45.0, "text": 10.0},
      seq_len=SEQ_LEN, max_images_per_seq=SEQ_LEN // NUM_IMAGE_TOKENS, pack=True,
      batch_size=BATCH, shuffle_seed=0, max_skip_fraction=0.01,
      num_workers=args.num_workers, read_threads=args.read_threads, resize=args.resize,
      log_every_batches=0)
  layout = BatchLayout(seq_len=SEQ_LEN, max_images=SEQ_LEN // NUM_IMAGE_TOKENS,
                       tokens_per_image=NUM_IMAGE_TOKENS, image_size=IMAGE_SIZE)
  return data, layout


def define_flags(fv: flags.FlagValues) -> None:
  """Flags on `fv`, a holder of this benchmark's own (mmscale/cli_flags.py)."""
  flags.DEFINE_string("world_dir", "/tmp/mmscale_bench_world64", None, flag_values=fv)
  flags.DEFINE_integer("num_scenes", 3000, None, flag_values=fv)
  flags.DEFINE_integer("batches", 60, None, flag_values=fv)
  flags.DEFINE_integer("warmup", 5, None, flag_values=fv)
  flags.DEFINE_integer("num_workers", 0, None, flag_values=fv)
  flags.DEFINE_integer("read_threads", 2, None, flag_values=fv)
  flags.DEFINE_enum("resize", "stretch", ["stretch", "pad", "crop"], None, flag_values=fv)
  flags.DEFINE_float("train_tokens_per_s", 3000.0,
                     "sequence positions/s the reference train step consumes", flag_values=fv)


def main(argv: list[str]) -> None:
  """argv = [program, *flags]; prints the measurement as JSON (measure() returns it)."""
  args, _ = cli_flags.parse(define_flags, argv, doc=__doc__)
  print(json.dumps(measure(args), indent=1))


def measure(args) -> dict:
  """Builds the world if needed, then times `args.batches` batches after `args.warmup`."""
  ensure_world(args.world_dir, args.num_scenes)
  data, layout = configs(args)
  tok = tokenizer_lib.Tokenizer(os.path.join(args.world_dir, "tokenizer.model"))
  it = pipeline.make_train_iterator(data, layout, tok, process_index=0, process_count=1, seed=0)
  for _ in range(args.warmup):
    next(it)
  before = pipeline.pipeline_stats(it)
  t = time.perf_counter()
  for _ in range(args.batches):
    next(it)
  dt = time.perf_counter() - t
  after = pipeline.pipeline_stats(it)
  examples = after["examples"] - before["examples"]
  pk0, pk1 = before["packing"], after["packing"]
  real_tokens = pk1["tokens"] - pk0["tokens"]
  rows = pk1["rows"] - pk0["rows"]
  positions_per_s = rows * SEQ_LEN / dt
  result = {
      "batches": args.batches, "seconds": round(dt, 3),
      "examples_per_s": round(examples / dt, 1),
      "tokens_per_s": round(real_tokens / dt, 1),        # non-pad tokens (text + image)
      "positions_per_s": round(positions_per_s, 1),      # rows x seq_len, what a step consumes
      "batches_per_s": round(args.batches / dt, 2),
      "packing_efficiency": round(real_tokens / max(rows * SEQ_LEN, 1), 4),
      "examples_per_row": round(examples / max(rows, 1), 3),
      "realised_mixture": {a: round(n / max(sum(after["arms"].values()), 1), 3)
                           for a, n in sorted(after["arms"].items())},
      "skipped": after["skipped"], "truncated": after["truncated"],
      "train_tokens_per_s": args.train_tokens_per_s,
      "supply_over_demand": round(positions_per_s / args.train_tokens_per_s, 2),
      "num_workers": args.num_workers, "read_threads": args.read_threads, "resize": args.resize}
  return result


if __name__ == "__main__":
  cli_flags.run(main)
