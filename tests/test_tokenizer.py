"""Tokenizer: fixed special ids, word-level round trip, pickling, clear errors."""
import pickle

import pytest

from mmscale.data import tokenizer as tok_lib

LINES = ["a red circle and a blue square .", "what colour is the circle ? red",
         "the cross belongs to family kell ."]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  d = tmp_path_factory.mktemp("tok")
  corpus = d / "corpus.txt"
  corpus.write_text("\n".join(LINES * 5) + "\n")
  need = tok_lib.count_words([str(corpus)]) + 8
  return tok_lib.Tokenizer(tok_lib.train_tokenizer([str(corpus)], str(d / "w"), need))


def test_special_ids(tok):
  assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id, tok.image_id) == (0, 1, 2, 3, 4)
  assert tok.id_to_piece(tok.image_id) == "<img>"
  words = {w for line in LINES for w in line.split()}
  assert tok.vocab_size == len(words) + 6  # 5 specials + sentencepiece's '▁<img>'


def test_round_trip_one_token_per_word(tok):
  for line in LINES:
    ids = tok.encode(line)
    assert len(ids) == len(line.split()) and tok.unk_id not in ids
    assert tok.decode(ids) == line
  assert tok.encode("zebra")[0] == tok.unk_id
  assert tok.decode([tok.pad_id] + tok.encode("red circle")) == "red circle"


def test_pickle_carries_the_model(tok):
  clone = pickle.loads(pickle.dumps(tok))
  assert clone.encode(LINES[0]) == tok.encode(LINES[0]) and clone.image_id == tok.image_id


def test_missing_files_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.model"):
    tok_lib.Tokenizer(str(tmp_path / "nope.model"))
  with pytest.raises(FileNotFoundError, match="absent.txt"):
    tok_lib.train_tokenizer([str(tmp_path / "absent.txt")], str(tmp_path / "x"), 10)


def test_bpe_model_keeps_special_ids(tmp_path):
  corpus = tmp_path / "c.txt"
  corpus.write_text("\n".join(LINES * 20) + "\n")
  t = tok_lib.Tokenizer(tok_lib.train_tokenizer(str(corpus), str(tmp_path / "b"), 40, "bpe"))
  assert (t.pad_id, t.bos_id, t.eos_id, t.image_id) == (0, 2, 3, 4)
  assert t.decode(t.encode(LINES[1])) == LINES[1]
