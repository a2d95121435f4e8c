"""Trains a SentencePiece tokenizer with mmscale's special ids (pad 0, unk 1, bos 2, eos 3, <img>).

  python tools/train_tokenizer.py --corpus=a.txt,b.txt --out_prefix=out/tok --vocab_size=8000 \
      --model_type=bpe

With --model_type=word and no --vocab_size, the size is what the corpus needs (distinct words +
the special pieces), as for the knowledge world.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from mmscale import cli_flags  # noqa: E402
from mmscale.data.tokenizer import MODEL_TYPES, Tokenizer, count_words, train_tokenizer  # noqa


def define_flags(fv: flags.FlagValues) -> None:
  """Flags on `fv`, a holder of this tool's own (mmscale/cli_flags.py)."""
  flags.DEFINE_string("corpus", None, "comma-separated text files, one sentence a line",
                      flag_values=fv)
  flags.DEFINE_string("out_prefix", None, "writes OUT_PREFIX.model and .vocab", flag_values=fv)
  flags.DEFINE_integer("vocab_size", 0, "0: all words (word models only)", flag_values=fv)
  flags.DEFINE_enum("model_type", "word", list(MODEL_TYPES), None, flag_values=fv)
  flags.mark_flags_as_required(["corpus", "out_prefix"], flag_values=fv)


def main(argv: list[str]) -> None:
  """argv = [program, *flags] (module docstring)."""
  args, _ = cli_flags.parse(define_flags, argv, doc=__doc__)
  paths = [c for c in args.corpus.split(",") if c]
  for path in paths:
    if not os.path.isfile(path):
      raise SystemExit(f"corpus file not found: {path}")
  size = args.vocab_size
  if size <= 0:
    if args.model_type != "word":
      raise SystemExit("--vocab_size is required unless --model_type=word")
    size = count_words(paths) + 8
  model = train_tokenizer(paths, args.out_prefix, size, args.model_type)
  tok = Tokenizer(model)
  with open(paths[0]) as f:
    line = f.readline().strip()
  ids = tok.encode(line)
  print(f"{model}: {tok.vocab_size} pieces; pad {tok.pad_id} unk {tok.unk_id} bos {tok.bos_id} "
        f"eos {tok.eos_id} image {tok.image_id}")
  print(f"example: {line!r} -> {ids[:32]}")


if __name__ == "__main__":
  cli_flags.run(main)
