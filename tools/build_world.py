"""Builds the knowledge world: every data arm, the eval set, the knowledge base and a tokenizer.

  python tools/build_world.py --out=data/world --num_scenes=20000 --seed=0

Prints a summary and one example record per arm. Layout of the output: docs/data_format.md.
"""
import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mmscale.data import records, world  # noqa: E402
from mmscale.data.world_spec import WorldSpec  # noqa: E402


def _tuple(s: str) -> tuple:
  return tuple(w.strip() for w in s.split(",") if w.strip())


def parse_args(argv=None) -> argparse.Namespace:
  d = WorldSpec()
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", required=True, help="output directory")
  p.add_argument("--num_scenes", type=int, default=20000)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--num_eval_scenes", "--num_eval", type=int, default=500)
  p.add_argument("--num_shards", type=int, default=1)
  p.add_argument("--num_text_docs", type=int, default=None, help="default: num_scenes // 4")
  p.add_argument("--image_size", type=int, default=d.image_size)
  p.add_argument("--grid", type=int, default=d.grid)
  p.add_argument("--shapes", type=_tuple, default=d.shapes)
  p.add_argument("--colours", type=_tuple, default=d.colours)
  p.add_argument("--sizes", type=_tuple, default=d.sizes)
  p.add_argument("--textures", type=_tuple, default=d.textures)
  p.add_argument("--min_objects", type=int, default=d.min_objects)
  p.add_argument("--max_objects", type=int, default=d.max_objects)
  p.add_argument("--num_vqa_fact_shapes", type=int, default=d.num_vqa_fact_shapes)
  p.add_argument("--vqa_per_scene", type=int, default=d.vqa_per_scene)
  p.add_argument("--eval_per_type", type=int, default=d.eval_per_type)
  p.add_argument("--no_tokenizer", action="store_true", help="skip training tokenizer.model")
  p.add_argument("--quiet", action="store_true", help="no example records")
  return p.parse_args(argv)


def show_example(record_dir: str) -> str:
  rec = next(records.iter_records(record_dir))
  segs = " ".join(f"<img{s['image']}>" if "image" in s else
                  (s["text"] if s["loss"] else f"[{s['text']}]") for s in rec["segments"])
  return f"{rec['kind']:11s} {segs}"


def main(argv=None) -> None:
  args = parse_args(argv)
  fields = {f.name for f in dataclasses.fields(WorldSpec)}
  spec = WorldSpec(**{k: v for k, v in vars(args).items() if k in fields})
  t = time.time()
  summary = world.build_world(
      args.out, num_scenes=args.num_scenes, seed=args.seed, num_eval_scenes=args.num_eval_scenes,
      num_shards=args.num_shards, spec=spec, num_text_docs=args.num_text_docs,
      train_tok=not args.no_tokenizer, log=print)
  print(f"\nworld written to {args.out} in {time.time() - t:.1f}s")
  print(f"shapes {list(spec.shapes)}\ncolours {list(spec.colours)}\nsizes {list(spec.sizes)}"
        f"  textures {list(spec.textures)}  grid {spec.grid}x{spec.grid} of {spec.cell} px")
  print("kb " + "; ".join(f"{s}: " + " ".join(v.values()) for s, v in summary["kb"].items()))
  print(f"knowledge questions in the vqa arm only about: {summary['vqa_fact_shapes']}")
  print(f"eval questions per type: {summary['eval']['vqa']}")
  if summary["tokenizer"]:
    print(f"tokenizer: {summary['tokenizer']['vocab_size']} pieces")
  if not args.quiet:
    print("\none example per arm ([question] = no loss):")
    for arm in summary["arms"]:
      print(f"  {arm:15s} {show_example(os.path.join(args.out, 'arms', arm))}")
    print(f"  {'eval/vqa':15s} {show_example(os.path.join(args.out, 'eval', 'vqa'))}")


if __name__ == "__main__":
  main()
