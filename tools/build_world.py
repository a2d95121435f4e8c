"""Builds the knowledge world: every data arm, the eval set, the knowledge base and a tokenizer.

  python tools/build_world.py --out=data/world --num_scenes=20000 --seed=0
  python tools/build_world.py --out=data/world_relations --preset=relations

`--preset` starts from a named world (mmscale/data/world_spec.py WORLD_PRESETS); flags given
explicitly override its fields.

Prints a summary and one example record per arm. Layout of the output: docs/data_format.md.
"""
import dataclasses
import os
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from mmscale import cli_flags  # noqa: E402
from mmscale.data import records, world  # noqa: E402
from mmscale.data.world_spec import RELATION_FORMS, WORLD_PRESETS, WorldSpec  # noqa: E402
from mmscale.errors import ConfigError  # noqa: E402


LIST_FLAGS = ("shapes", "colours", "sizes", "textures")


def define_flags(fv: flags.FlagValues) -> None:
  """Flags on `fv`, a holder of this tool's own (mmscale/cli_flags.py); the WorldSpec ones
  default to WorldSpec()'s values."""
  d = WorldSpec()
  flags.DEFINE_string("out", None, "output directory", flag_values=fv)
  flags.DEFINE_enum("preset", "default", list(WORLD_PRESETS), "a named world whose fields "
                    "replace the defaults; flags given explicitly override them", flag_values=fv)
  flags.DEFINE_integer("num_scenes", 20000, None, flag_values=fv)
  flags.DEFINE_integer("seed", 0, None, flag_values=fv)
  flags.DEFINE_integer("num_eval_scenes", 500, None, flag_values=fv)
  flags.DEFINE_alias("num_eval", "num_eval_scenes", flag_values=fv)
  flags.DEFINE_integer("num_shards", 1, None, flag_values=fv)
  flags.DEFINE_integer("num_text_docs", None, "default: num_scenes // 4", flag_values=fv)
  flags.DEFINE_integer("image_size", d.image_size, None, flag_values=fv)
  flags.DEFINE_integer("grid", d.grid, None, flag_values=fv)
  for name in LIST_FLAGS:  # comma separated
    flags.DEFINE_list(name, list(getattr(d, name)), None, flag_values=fv)
  flags.DEFINE_integer("min_objects", d.min_objects, None, flag_values=fv)
  flags.DEFINE_integer("max_objects", d.max_objects, None, flag_values=fv)
  flags.DEFINE_integer("num_vqa_fact_shapes", d.num_vqa_fact_shapes, None, flag_values=fv)
  flags.DEFINE_integer("vqa_per_scene", d.vqa_per_scene, None, flag_values=fv)
  flags.DEFINE_integer("eval_per_type", d.eval_per_type, None, flag_values=fv)
  flags.DEFINE_boolean("grounding", d.grounding, "ask 'where is the red cross ?' -> 'top left' "
                       "in the VQA arm and the eval set", flag_values=fv)
  flags.DEFINE_enum("relation_form", d.relation_form, list(RELATION_FORMS),
                    "relation questions: 'yesno' (is the red circle left of the blue square ?) "
                    "or 'which' (where is the red circle relative to the blue square ? -> "
                    "'above and left of')", flag_values=fv)
  flags.DEFINE_boolean("no_tokenizer", False, "skip training tokenizer.model", flag_values=fv)
  flags.DEFINE_boolean("quiet", False, "no example records", flag_values=fv)
  flags.mark_flags_as_required(["out"], flag_values=fv)


def parse_args(argv: list[str]) -> dict:
  """argv = [program, *flags] -> {flag name: value}; the list flags as tuples of non-empty
  words, as WorldSpec holds them."""
  fv, _ = cli_flags.parse(define_flags, argv, doc=__doc__)
  args = fv.flag_values_dict()
  for name in LIST_FLAGS:
    args[name] = tuple(w.strip() for w in args[name] if w.strip())
  for name, value in WORLD_PRESETS[args["preset"]].items():
    if not fv[name].present:
      args[name] = value
  return args


def show_example(record_dir: str) -> str:
  rec = next(records.iter_records(record_dir))
  segs = " ".join(f"<img{s['image']}>" if "image" in s else
                  (s["text"] if s["loss"] else f"[{s['text']}]") for s in rec["segments"])
  return f"{rec['kind']:11s} {segs}"


def main(argv: list[str]) -> None:
  """argv = [program, *flags] (module docstring)."""
  args = types.SimpleNamespace(**parse_args(argv))
  fields = {f.name for f in dataclasses.fields(WorldSpec)}
  spec = WorldSpec(**{k: v for k, v in vars(args).items() if k in fields})
  t = time.time()
  try:
    summary = world.build_world(
        args.out, num_scenes=args.num_scenes, seed=args.seed,
        num_eval_scenes=args.num_eval_scenes, num_shards=args.num_shards, spec=spec,
        num_text_docs=args.num_text_docs, train_tok=not args.no_tokenizer, log=print)
  except ConfigError as e:  # e.g. a --shapes value the world does not know: one line
    sys.exit(f"error: {e}")
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
  cli_flags.run(main)
