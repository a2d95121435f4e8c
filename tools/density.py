"""Knowledge-density report of a record directory (docs/knowledge_engine.md, "density report").

  python tools/density.py data/world/arms/knowledge --inventory=data/world/eval/vqa
  python tools/density.py DIR --describe --vocab=vocab.json --tokenizer=tok.model --out=r.json

`--inventory`: an eval record directory or a JSON inventory file; default: the world's eval/vqa
when DIR lies in a knowledge world. `--describe`: parse text of records without a descriptor with
the offline describer. Prints the JSON report.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from mmscale import cli_flags  # noqa: E402
from mmscale.knowledge import density, parse  # noqa: E402
from mmscale.knowledge import vocab as vocab_lib  # noqa: E402


def define_flags(fv: flags.FlagValues) -> None:
  """Flags on `fv`, a holder of this tool's own (mmscale/cli_flags.py)."""
  flags.DEFINE_string("inventory", None, None, flag_values=fv)
  flags.DEFINE_boolean("describe", False, None, flag_values=fv)
  flags.DEFINE_string("vocab", None, None, flag_values=fv)
  flags.DEFINE_string("tokenizer", None, "SentencePiece model for token counts", flag_values=fv)
  flags.DEFINE_string("out", None, "also write the JSON here", flag_values=fv)


def main(argv: list[str]) -> int:
  """argv = [program, DIR, ...] with flags anywhere: one report per record directory DIR."""
  args, dirs = cli_flags.parse(define_flags, argv, doc=__doc__, positional=True)
  dirs = dirs[1:]
  if not dirs:
    cli_flags.usage_error("give one or more record directories (DIR ...)")
  count_tokens = None
  if args.tokenizer:
    from mmscale.data.tokenizer import Tokenizer  # pylint: disable=import-outside-toplevel
    tok = Tokenizer(args.tokenizer)
    count_tokens = lambda t: len(tok.encode(t))  # noqa: E731
  reports = []
  for d in dirs:
    world = vocab_lib.find_world_file(d)
    inv_path = args.inventory or (os.path.join(os.path.dirname(world), "eval", "vqa")
                                  if world else None)
    describe = None
    if args.describe:
      voc = vocab_lib.load_vocabulary(args.vocab or world)
      describe = lambda r: parse.describe(  # noqa: E731
          " ".join(s["text"] for s in r["segments"] if "text" in s), voc)
    inv = density.load_inventory(inv_path) if inv_path else None
    reports.append({**density.report_dir(d, inventory=inv, count_tokens=count_tokens,
                                         describe=describe), "inventory": inv_path})
  text = json.dumps(reports[0] if len(reports) == 1 else reports, indent=1)
  print(text)
  if args.out:
    with open(args.out, "w") as f:
      f.write(text + "\n")
  return 0


if __name__ == "__main__":
  cli_flags.run(main)
