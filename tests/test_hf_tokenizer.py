"""A checkpoint's own tokenizer.json (the `tokenizers` library) behind the one Tokenizer
interface, with its special tokens resolved in one place."""

import json
import pickle

import pytest

from mmscale.data import tokenizer as tok_lib

tokenizers = pytest.importorskip("tokenizers")


def write_hf_tokenizer(directory, words, special_config, extra_tokens=()):
  """A word-level tokenizer.json over `words` (+ tokenizer_config.json), like a checkpoint's."""
  directory.mkdir(parents=True, exist_ok=True)
  specials = [v["content"] if isinstance(v, dict) else v
              for v in special_config.values() if v] + list(extra_tokens)
  vocab = {w: i for i, w in enumerate(dict.fromkeys(specials + list(words)))}
  tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token=specials[0]))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
  tok.decoder = tokenizers.decoders.WordPiece(prefix="##")
  tok.add_special_tokens(specials)
  tok.save(str(directory / "tokenizer.json"))
  (directory / "tokenizer_config.json").write_text(json.dumps(special_config))
  return str(directory)


def test_qwen_style_tokenizer(tmp_path):
  """No BOS (documents start with EOS), pad = EOS, an image placeholder of the family's."""
  path = write_hf_tokenizer(tmp_path / "q", "a red cube sits left".split(),
                            {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                             "bos_token": None}, extra_tokens=("<|image_pad|>",))
  tok = tok_lib.Tokenizer(path)
  assert isinstance(tok, tok_lib.HFTokenizer)
  eos = tok.piece_to_id("<|endoftext|>")
  assert (tok.bos_id, tok.eos_id, tok.pad_id) == (eos, eos, eos)
  assert tok.image_id == tok.piece_to_id("<|image_pad|>")
  ids = tok.encode("a red cube")
  assert ids == [tok.piece_to_id(w) for w in ("a", "red", "cube")]
  assert tok.decode(ids) == "a red cube"
  clone = pickle.loads(pickle.dumps(tok))  # grain workers get a copy
  assert clone.encode("sits left") == tok.encode("sits left") and clone.image_id == tok.image_id


def test_llama_style_tokenizer_gets_an_image_token(tmp_path):
  path = write_hf_tokenizer(tmp_path / "l", "blue ball".split(),
                            {"bos_token": {"content": "<s>"}, "eos_token": "</s>"})
  tok = tok_lib.load_tokenizer(path + "/tokenizer.json")
  size = len("blue ball".split()) + 2
  assert tok.image_id == size and tok.vocab_size == size + 1  # '<image>' added past the vocab
  assert tok.bos_id == tok.piece_to_id("<s>") and tok.pad_id == tok_lib.PAD_ID


def test_missing_eos_fails_naming_the_file(tmp_path):
  path = write_hf_tokenizer(tmp_path / "x", ["w"], {"unk_token": "<unk>"})
  with pytest.raises(ValueError, match="no eos_token"):
    tok_lib.Tokenizer(path)
