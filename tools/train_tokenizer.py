"""Trains a SentencePiece tokenizer with mmscale's special ids (pad 0, unk 1, bos 2, eos 3, <img>).

  python tools/train_tokenizer.py --corpus=a.txt,b.txt --out_prefix=out/tok --vocab_size=8000 \
      --model_type=bpe

With --model_type=word and no --vocab_size, the size is what the corpus needs (distinct words +
the special pieces), as for the knowledge world.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mmscale.data.tokenizer import MODEL_TYPES, Tokenizer, count_words, train_tokenizer  # noqa


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--corpus", required=True, help="comma-separated text files, one sentence a line")
  p.add_argument("--out_prefix", required=True, help="writes OUT_PREFIX.model and .vocab")
  p.add_argument("--vocab_size", type=int, default=0, help="0: all words (word models only)")
  p.add_argument("--model_type", default="word", choices=MODEL_TYPES)
  args = p.parse_args(argv)
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
  main()
