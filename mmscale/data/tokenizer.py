"""The one tokenizer interface, over SentencePiece models and Hugging Face tokenizer.json files.

`Tokenizer(path)` (or `load_tokenizer(path)`) picks the implementation from the path through a
registry: a `.model` file is SentencePiece (`SentencePieceTokenizer`), a `tokenizer.json` file or
a directory holding one is the `tokenizers` library (`HFTokenizer`, a pretrained checkpoint's own
tokenizer). Both give the same interface: encode / decode without BOS/EOS (the packer decides
where they go), id_to_piece / piece_to_id, vocab_size and the special ids pad / unk / bos / eos /
image, resolved in one place per implementation.

mmscale's own SentencePiece models have fixed special ids: pad 0, unk 1, bos 2, eos 3, `<img>` 4.
`<img>` is a user-defined symbol so it is one piece that ordinary text never produces. The
knowledge world uses a word-level model (~100 pieces: every answer is one token); real corpora
use bpe or unigram with the same special ids. Batches pad with id 0 whatever the tokenizer:
padding has segment id 0 and is never attended to or scored.
"""
import abc
import json
import os
from typing import Callable, Iterable, Sequence

import sentencepiece as spm

from mmscale.registry import Registry

IMAGE_SYMBOL = "<img>"
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
MODEL_TYPES = ("word", "bpe", "unigram", "char")

# tokenizer kind (`tokenizer_kind(path)`) -> the implementation class
TOKENIZER_KINDS: Registry[Callable[[str], "Tokenizer"]] = Registry("tokenizer kind")


def tokenizer_kind(path: str) -> str:
  """'huggingface' for a tokenizer.json (or a directory holding one), else 'sentencepiece'."""
  if path.endswith(".json") or os.path.isfile(os.path.join(path, "tokenizer.json")):
    return "huggingface"
  return "sentencepiece"


def load_tokenizer(path: str) -> "Tokenizer":
  """The tokenizer at `path` (a SentencePiece .model, a tokenizer.json, or a checkpoint
  directory holding tokenizer.json)."""
  return TOKENIZER_KINDS.get(tokenizer_kind(path))(path)


class Tokenizer(abc.ABC):
  """The interface. `Tokenizer(path)` returns the implementation `path` needs (load_tokenizer).

  Implementations provide encode, decode, id_to_piece, piece_to_id, vocab_size and the ids
  pad_id, unk_id, bos_id, eos_id, image_id (the placeholder written at image-token positions).
  """

  def __new__(cls, path: str | None = None):
    if cls is Tokenizer and path is not None:
      return load_tokenizer(path)
    return super().__new__(cls)

  def _built(self) -> bool:
    """True when `Tokenizer(path)` already built this object (Python then calls __init__
    again with the same path)."""
    return "model_path" in self.__dict__

  @abc.abstractmethod
  def encode(self, text: str) -> list[int]:
    """Text -> ids, without BOS/EOS."""

  @abc.abstractmethod
  def decode(self, ids: Iterable[int]) -> str:
    """Ids -> text."""

  @abc.abstractmethod
  def save(self, directory: str) -> None:
    """Writes this tokenizer's files into `directory` (an export, a run's copy)."""


@TOKENIZER_KINDS.register("sentencepiece")
class SentencePieceTokenizer(Tokenizer):
  """Wraps a SentencePiece model; `encode` adds no BOS/EOS (the packer decides where they go)."""

  def __init__(self, model_path: str):
    if self._built():
      return
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

  def save(self, directory: str) -> None:
    """`directory`/tokenizer.model."""
    with open(os.path.join(directory, "tokenizer.model"), "wb") as f:
      f.write(self._sp.serialized_model_proto())

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


# Image placeholders of the pretrained families' tokenizers, first found wins; a tokenizer with
# none of them gets IMAGE_TOKEN added as a special token (one id past its vocabulary).
IMAGE_TOKENS = ("<image>", "<|image_pad|>", IMAGE_SYMBOL)
IMAGE_TOKEN = "<image>"


@TOKENIZER_KINDS.register("huggingface")
class HFTokenizer(Tokenizer):
  """A Hugging Face tokenizer.json through the `tokenizers` library (a checkpoint's own).

  Special ids come from tokenizer_config.json beside tokenizer.json (bos_token, eos_token,
  pad_token, unk_token); a family without a BOS token (Qwen) starts documents with its EOS token
  (GPT-2 style separators), one without a pad token pads with id 0 (padding is never attended
  to). The image placeholder is the first of IMAGE_TOKENS in the vocabulary, else IMAGE_TOKEN is
  added as a special token.
  """

  def __init__(self, path: str):
    if self._built():
      return
    file = path if path.endswith(".json") else os.path.join(path, "tokenizer.json")
    if not os.path.isfile(file):
      raise FileNotFoundError(f"tokenizer file not found: {file} (a Hugging Face checkpoint "
                              "directory holds tokenizer.json)")
    self.model_path = file
    with open(file) as f:
      self._load(f.read(), _read_special_tokens(os.path.dirname(file)))

  def _load(self, json_text: str, special: dict) -> None:
    from tokenizers import Tokenizer as Backend  # pylint: disable=import-outside-toplevel
    self._json, self._special = json_text, special
    self._tok = Backend.from_str(json_text)
    present = [t for t in IMAGE_TOKENS if self._tok.token_to_id(t) is not None]
    if not present:
      self._tok.add_special_tokens([IMAGE_TOKEN])
    self.image_id = self._tok.token_to_id(present[0] if present else IMAGE_TOKEN)
    ids = {k: self._tok.token_to_id(v) for k, v in special.items() if v is not None}
    self._eos = ids.get("eos_token")
    if self._eos is None:
      raise ValueError(f"{self.model_path}: no eos_token in tokenizer_config.json (needed to "
                       "end documents and stop generation)")
    self._bos = ids.get("bos_token", self._eos)
    self._pad = ids.get("pad_token", PAD_ID)
    self._unk = ids.get("unk_token", self._pad)

  def __getstate__(self) -> dict:
    return {"model_path": self.model_path, "json": self._json, "special": self._special}

  def __setstate__(self, state: dict) -> None:
    self.model_path = state["model_path"]
    self._load(state["json"], state["special"])

  def save(self, directory: str) -> None:
    """`directory`/tokenizer.json (with an added image token) and tokenizer_config.json naming
    the special tokens, which transformers' PreTrainedTokenizerFast and this class both read."""
    self._tok.save(os.path.join(directory, "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast",
              **{k: self._tok.id_to_token(i) for k, i in (
                  ("bos_token", self._bos), ("eos_token", self._eos), ("pad_token", self._pad),
                  ("unk_token", self._unk))}}
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
      json.dump(config, f, indent=2)

  def encode(self, text: str) -> list[int]:
    return list(self._tok.encode(text, add_special_tokens=False).ids)

  def decode(self, ids: Iterable[int]) -> str:
    return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

  def id_to_piece(self, i: int) -> str:
    return self._tok.id_to_token(int(i))

  def piece_to_id(self, piece: str) -> int:
    found = self._tok.token_to_id(piece)
    return self._unk if found is None else found

  @property
  def vocab_size(self) -> int:
    return self._tok.get_vocab_size(with_added_tokens=True)

  @property
  def pad_id(self) -> int:
    return self._pad

  @property
  def unk_id(self) -> int:
    return self._unk

  @property
  def bos_id(self) -> int:
    return self._bos

  @property
  def eos_id(self) -> int:
    return self._eos


def _read_special_tokens(directory: str) -> dict:
  """{bos_token, eos_token, pad_token, unk_token: str or None} from tokenizer_config.json (and
  special_tokens_map.json) in `directory`; entries may be strings or {"content": ...}."""
  out = {}
  for name in ("special_tokens_map.json", "tokenizer_config.json"):
    file = os.path.join(directory, name)
    if os.path.isfile(file):
      with open(file) as f:
        config = json.load(f)
      for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
        value = config.get(key)
        if isinstance(value, dict):
          value = value.get("content")
        if value is not None:
          out[key] = value
  return out


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
