"""SentencePiece tokenizer with fixed special ids: pad 0, unk 1, bos 2, eos 3, `<img>` 4.

Fixed ids let batches (contracts §4) pad with 0 and mark image positions with `image_id` without
looking anything up; `<img>` is a user-defined symbol so it is one piece that ordinary text never
produces. The knowledge world uses a word-level model (~100 pieces: every answer is one token);
real corpora use bpe or unigram with the same special ids.
"""
import os
from typing import Iterable, Sequence

import sentencepiece as spm

IMAGE_SYMBOL = "<img>"
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
MODEL_TYPES = ("word", "bpe", "unigram", "char")


class Tokenizer:
  """Wraps a SentencePiece model; `encode` adds no BOS/EOS (the packer decides where they go)."""

  def __init__(self, model_path: str):
    if not os.path.isfile(model_path):
      raise FileNotFoundError(
          f"tokenizer model not found: {model_path} (train one with tools/train_tokenizer.py, "
          "or tools/build_world.py writes DIR/tokenizer.model)")
    self.model_path = model_path
    self._load(spm.SentencePieceProcessor(model_file=model_path))

  def _load(self, sp: spm.SentencePieceProcessor) -> None:
    self._sp = sp
    self.image_id = sp.piece_to_id(IMAGE_SYMBOL)
    if self.image_id == sp.unk_id():
      raise ValueError(f"tokenizer model {self.model_path} lacks the user-defined symbol "
                       f"'{IMAGE_SYMBOL}'; train it with mmscale.data.tokenizer.train_tokenizer")
    if sp.pad_id() != PAD_ID:
      raise ValueError(f"tokenizer model {self.model_path} has pad_id {sp.pad_id()}, expected 0")

  def __getstate__(self) -> dict:
    # The serialized model travels with the object, so grain worker processes need no file.
    return {"model_path": self.model_path, "proto": self._sp.serialized_model_proto()}

  def __setstate__(self, state: dict) -> None:
    self.model_path = state["model_path"]
    self._load(spm.SentencePieceProcessor(model_proto=state["proto"]))

  def encode(self, text: str) -> list[int]:
    return list(self._sp.encode(text, out_type=int))

  def decode(self, ids: Iterable[int]) -> str:
    return self._sp.decode([int(i) for i in ids])

  def id_to_piece(self, i: int) -> str:
    return self._sp.id_to_piece(int(i))

  def piece_to_id(self, piece: str) -> int:
    return self._sp.piece_to_id(piece)

  @property
  def vocab_size(self) -> int:
    return self._sp.get_piece_size()

  @property
  def pad_id(self) -> int:
    return self._sp.pad_id()

  @property
  def unk_id(self) -> int:
    return self._sp.unk_id()

  @property
  def bos_id(self) -> int:
    return self._sp.bos_id()

  @property
  def eos_id(self) -> int:
    return self._sp.eos_id()


def count_words(corpus_paths: Sequence[str]) -> int:
  """Distinct whitespace-separated words: the vocabulary a word-level model needs."""
  words = set()
  for path in corpus_paths:
    with open(path) as f:
      for line in f:
        words.update(line.split())
  return len(words)


def train_tokenizer(corpus_paths: str | Sequence[str], out_prefix: str, vocab_size: int,
                    model_type: str = "word") -> str:
  """Trains SentencePiece on text files (one sentence per line); returns `out_prefix + '.model'`.

  `hard_vocab_limit=False` makes `vocab_size` an upper bound, so a word model on a small world
  gets exactly the words it needs; no byte fallback, as the corpora are known in advance.
  """
  paths = [corpus_paths] if isinstance(corpus_paths, str) else list(corpus_paths)
  for p in paths:
    if not os.path.isfile(p):
      raise FileNotFoundError(f"tokenizer corpus not found: {p}")
  if model_type not in MODEL_TYPES:
    raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}")
  out_dir = os.path.dirname(os.path.abspath(out_prefix))
  os.makedirs(out_dir, exist_ok=True)
  spm.SentencePieceTrainer.train(
      input=",".join(paths), model_prefix=out_prefix, vocab_size=int(vocab_size),
      model_type=model_type, user_defined_symbols=[IMAGE_SYMBOL], pad_id=PAD_ID, unk_id=UNK_ID,
      bos_id=BOS_ID, eos_id=EOS_ID, hard_vocab_limit=False, character_coverage=1.0,
      byte_fallback=False, input_sentence_size=2_000_000, shuffle_input_sentence=True,
      num_threads=min(8, os.cpu_count() or 1), minloglevel=2)
  return out_prefix + ".model"
