"""The grain loader end to end on tiny record directories: layout, masks, determinism, resume,
process slices, mixture weights, skip accounting and the eval prompt helper."""

import io
import json
import os

import ml_collections
import msgpack
from array_record.python import array_record_module
import numpy as np
import pytest
from PIL import Image

from mmscale.config import base_config
from mmscale.data import pipeline, records
from mmscale.data.batch import BatchLayout
from mmscale.data import tokenizer as tokenizer_lib
from mmscale.errors import ConfigError, DataError

S, K, T, M = 16, 4, 48, 2
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]
SHAPES = ["cube", "ball", "cone", "ring", "star"]


def png(i: int) -> bytes:
  buf = io.BytesIO()
  Image.new("RGB", (S, S), (40 * (i % 6), 30 * (i % 8), 20 * (i % 12))).save(buf, format="PNG")
  return buf.getvalue()


def caption(i: int) -> str:
  return f"a {COLOURS[i % 6]} {SHAPES[i % 5]} near a {COLOURS[(i + 2) % 6]} {SHAPES[(i + 1) % 5]}"


def make_arm(arm: str, i: int) -> dict:
  rid = f"{arm}-{i}"
  if arm == "caption":
    return {"id": rid, "kind": "caption", "images": [png(i)],
            "segments": [{"image": 0}, {"text": caption(i), "loss": True}]}
  if arm == "vqa":
    return {"id": rid, "kind": "vqa", "images": [png(i)],
            "segments": [{"image": 0}, {"text": "what colour is the shape", "loss": False},
                         {"text": COLOURS[i % 6], "loss": True}],
            "meta": {"qtype": "attribute", "answer": COLOURS[i % 6]}}
  if arm == "interleaved":
    return {"id": rid, "kind": "interleaved", "images": [png(i), png(i + 1)],
            "segments": [{"image": 0}, {"text": caption(i), "loss": True}, {"image": 1},
                         {"text": caption(i + 1), "loss": True}]}
  return {"id": rid, "kind": "text", "images": [],
          "segments": [{"text": f"the {SHAPES[i % 5]} is {COLOURS[i % 6]} and small",
                        "loss": True}]}


ARMS = {"caption": 24, "vqa": 24, "interleaved": 12, "text": 16}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  root = tmp_path_factory.mktemp("world")
  for arm, n in ARMS.items():
    records.write_records(str(root / "arms" / arm), [make_arm(arm, i) for i in range(n)],
                          num_shards=2, source="test")
  records.write_records(str(root / "eval" / "vqa"), [make_arm("vqa", 100 + i) for i in range(5)],
                        source="test")
  words = " ".join(COLOURS + SHAPES + "a near what colour is the shape and small".split())
  corpus = root / "corpus.txt"
  corpus.write_text("\n".join([words] * 20 + [caption(i) for i in range(30)]) + "\n")
  model = tokenizer_lib.train_tokenizer([str(corpus)], str(root / "tok"), vocab_size=32,
                                        model_type="word")
  return str(root), tokenizer_lib.Tokenizer(model)


def data_config(world_dir, **kw):
  """The schema's data section (mmscale/config.py) with this test's values."""
  cfg = base_config().data
  cfg.update(world_dir=world_dir, seq_len=T, max_images_per_seq=M, pack=True, batch_size=4,
             shuffle_seed=3, max_skip_fraction=0.1, num_workers=0)
  mixture = kw.pop("mixture", {"caption": 1.0, "vqa": 1.0, "interleaved": 1.0, "text": 1.0})
  cfg.mixture = ml_collections.ConfigDict(mixture)  # replaced, not merged into the default
  cfg.update(kw)
  return cfg


LAYOUT = BatchLayout(seq_len=T, max_images=M, tokens_per_image=K, image_size=S)


def layout_of(cfg) -> BatchLayout:
  """The layout a run with this data section resolves to (K and S fixed by the model)."""
  return BatchLayout(seq_len=cfg.seq_len, max_images=cfg.max_images_per_seq,
                     tokens_per_image=K, image_size=S)


def train_iter(world, process_index=0, process_count=1, seed=0, **kw):
  world_dir, tok = world
  cfg = data_config(world_dir, **kw)
  return pipeline.make_train_iterator(cfg, layout_of(cfg), tok,
                                      process_index=process_index,
                                      process_count=process_count, seed=seed)


def examples(world, n, process_index=0, process_count=1, **kw):
  world_dir, tok = world
  cfg = data_config(world_dir, **kw)
  it = iter(pipeline.example_dataset(cfg, layout_of(cfg), tok,
                                     process_index=process_index, process_count=process_count))
  return [next(it) for _ in range(n)]


def assert_batches_equal(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])


def test_batch_shapes_and_dtypes(world):
  batch = next(train_iter(world, process_count=2))
  b = 2
  expect = {"tokens": ((b, T), np.int32), "positions": ((b, T), np.int32),
            "segment_ids": ((b, T), np.int32), "mask_ar": ((b, T), np.int32),
            "mask_loss": ((b, T), np.int32), "images": ((b, M, S, S, 3), np.float32),
            "image_positions": ((b, M * K), np.int32)}
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == expect
  assert batch["images"].min() >= -1.0 and batch["images"].max() <= 1.0


def test_mask_semantics(world):
  tok = world[1]
  it = train_iter(world)
  for _ in range(3):
    batch = next(it)
    for r in range(batch["tokens"].shape[0]):
      tokens, seg, pos = batch["tokens"][r], batch["segment_ids"][r], batch["positions"][r]
      ip = batch["image_positions"][r]
      used = ip[ip < T]
      assert (tokens[used] == tok.image_id).all()
      assert ((tokens == tok.image_id).sum()) == len(used)
      assert (batch["mask_loss"][r][used] == 0).all()
      # Unused slots are sentinel T and zero images.
      n_img = len(used) // K
      assert (ip[n_img * K:] == T).all() and not batch["images"][r, n_img:].any()
      # Positions restart at 0 where a new example starts; padding is token 0, segment 0.
      starts = np.flatnonzero(np.diff(np.concatenate([[0], seg])) != 0)
      starts = [s for s in starts if seg[s] > 0]
      assert all(pos[s] == 0 and tokens[s] == tok.bos_id for s in starts)
      assert (tokens[seg == 0] == 0).all() and (batch["mask_loss"][r][seg == 0] == 0).all()
      assert seg.max() >= 1


def test_vqa_question_masks(world):
  tok = world[1]
  batch = next(train_iter(world, mixture={"vqa": 1.0}))
  question = tok.encode("what colour is the shape")
  row = batch["tokens"][0]
  start = 1 + K  # BOS, image block, then the question
  np.testing.assert_array_equal(row[start:start + len(question)], question)
  assert (batch["mask_loss"][0][:start + len(question)] == 0).all()
  assert (batch["mask_ar"][0][start:start + len(question)] == 0).all()
  assert batch["mask_loss"][0][start + len(question)] == 1  # the answer
  assert batch["segment_ids"][0].max() == M  # the image cap (M = 2) limits the row
  batch = next(train_iter(world, mixture={"vqa": 1.0}, max_images_per_seq=4))
  assert batch["segment_ids"][0].max() == 4  # 4 x 12 tokens fill T = 48 exactly


def test_packing_respects_image_cap(world):
  it = train_iter(world, mixture={"interleaved": 1.0, "caption": 1.0}, seq_len=96)
  for _ in range(4):
    batch = next(it)
    assert ((batch["image_positions"] < 96).sum(axis=1) <= M * K).all()
  stats = pipeline.pipeline_stats(it)
  assert 0 < stats["packing"]["efficiency"] <= 1


def test_pad_mode_one_example_per_row(world):
  batch = next(train_iter(world, pack=False))
  assert (batch["segment_ids"].max(axis=1) == 1).all()


def test_determinism_for_a_seed(world):
  a, b, c = train_iter(world, seed=1), train_iter(world, seed=1), train_iter(world, seed=2)
  for _ in range(3):
    ba, bb, bc = next(a), next(b), next(c)
    assert_batches_equal(ba, bb)
  assert not np.array_equal(ba["tokens"], bc["tokens"])


def test_resume_yields_the_same_batches(world):
  it = train_iter(world)
  for _ in range(3):
    next(it)
  state = json.loads(json.dumps(it.get_state()))
  expected = [next(it) for _ in range(4)]
  expected_stats = pipeline.pipeline_stats(it)
  fresh = train_iter(world)
  fresh.set_state(state)
  for want in expected:
    assert_batches_equal(next(fresh), want)
  assert pipeline.pipeline_stats(fresh) == expected_stats


def test_process_slices_are_disjoint_and_cover(world):
  n = ARMS["caption"]
  ids = [{e["id"] for e in examples(world, n // 2, p, 2, mixture={"caption": 1.0})}
         for p in range(2)]
  assert not ids[0] & ids[1]
  assert ids[0] | ids[1] == {f"caption-{i}" for i in range(n)}


def test_mixture_proportions(world):
  arms = [e["arm"] for e in examples(world, 400, mixture={"caption": 3.0, "text": 1.0})]
  assert abs(arms.count("caption") / len(arms) - 0.75) < 0.03


def _write_with_bad(out_dir, n_good, bad_blobs):
  """A record dir of good caption records followed by raw (invalid) blobs."""
  good = [make_arm("caption", i) for i in range(n_good)]
  manifest = records.write_records(out_dir, good + good[:1] * len(bad_blobs), source="test")
  path = os.path.join(out_dir, manifest["shards"][0]["path"])
  writer = array_record_module.ArrayRecordWriter(path, records.WRITER_OPTIONS)
  for rec in good:
    writer.write(records.encode_record(rec))
  for blob in bad_blobs:
    writer.write(blob)
  writer.close()


def _bad_blobs():
  jpeg = io.BytesIO()
  Image.new("RGB", (S, S), (9, 9, 9)).save(jpeg, format="JPEG")
  base = make_arm("caption", 0)
  return [
      records.encode_record({**base, "images": [jpeg.getvalue()[:30]]}),   # corrupt JPEG
      records.encode_record({**base, "images": [b""]}),                   # zero-byte image
      msgpack.packb({**base, "segments": [{"image": 0}, {"text": b"\xff\xfe", "loss": True}]},
                    use_bin_type=False),                                  # non-UTF-8 text
  ]


def test_corrupt_records_are_skipped_and_counted(world, tmp_path):
  world_dir, tok = world
  _write_with_bad(str(tmp_path / "arms" / "dirty"), 27, _bad_blobs())
  cfg = data_config(str(tmp_path), mixture={"dirty": 1.0}, max_skip_fraction=0.5)
  it = pipeline.make_train_iterator(cfg, LAYOUT, tok, process_index=0, process_count=1, seed=0)
  for _ in range(10):
    next(it)
  stats = pipeline.pipeline_stats(it)
  assert stats["skip_reasons"]["bad_image"] >= 2 and stats["skip_reasons"]["non_utf8"] >= 1
  assert stats["skipped"] == sum(stats["skip_reasons"].values())
  assert stats["examples"] + stats["skipped"] == stats["records"]


def test_too_many_skips_raise_data_error(world, tmp_path):
  world_dir, tok = world
  _write_with_bad(str(tmp_path / "arms" / "dirty"), 5, _bad_blobs() * 3)
  cfg = data_config(str(tmp_path), mixture={"dirty": 1.0}, max_skip_fraction=0.2,
                    skip_check_min_records=20)
  it = pipeline.make_train_iterator(cfg, LAYOUT, tok, process_index=0, process_count=1, seed=0)
  with pytest.raises(DataError, match=r"skipped fraction 0\.\d+.*max_skip_fraction=0\.2"):
    for _ in range(50):
      next(it)


def test_batch_size_divisibility(world):
  world_dir, tok = world
  cfg = data_config(world_dir, batch_size=6)
  batch = next(pipeline.make_train_iterator(cfg, LAYOUT, tok, process_index=1, process_count=3,
                                            seed=0))
  assert batch["tokens"].shape == (2, T)
  with pytest.raises(ConfigError, match="data.batch_size"):
    pipeline.make_train_iterator(cfg, LAYOUT, tok, process_index=0, process_count=4, seed=0)
  with pytest.raises(ConfigError, match="data.mixture.nope"):
    pipeline.make_train_iterator(data_config(world_dir, mixture={"nope": 1.0}), LAYOUT, tok,
                                 process_index=0, process_count=1, seed=0)


def test_worker_processes_match_in_process_and_resume(world):
  ref = train_iter(world)
  expected = [next(ref) for _ in range(4)]
  it = train_iter(world, num_workers=1)
  try:
    for want in expected[:2]:
      assert_batches_equal(next(it), want)
    state = json.loads(json.dumps(it.get_state()))
  finally:
    it.close()
  fresh = train_iter(world, num_workers=1)
  try:
    fresh.set_state(state)
    for want in expected[2:]:
      assert_batches_equal(next(fresh), want)
  finally:
    fresh.close()


def _flip_middle_bytes(record_dir: str) -> str:
  """Flips 64 bytes in the middle of the record dir's first shard (a damaged disk or copy)."""
  path = records.shard_paths(record_dir, verify=False)[0]
  data = bytearray(open(path, "rb").read())
  for i in range(len(data) // 2, len(data) // 2 + 64):
    data[i] ^= 0xFF
  with open(path, "wb") as f:
    f.write(bytes(data))
  return path


def test_flipped_bytes_in_a_shard_are_counted_skips_naming_the_file(world, tmp_path):
  """A damaged ArrayRecord chunk in a mixture component costs its records, not the run."""
  world_dir, tok = world
  damaged = str(tmp_path / "arms" / "damaged")
  records.write_records(damaged, [make_arm("caption", i) for i in range(400)], source="test")
  path = _flip_middle_bytes(damaged)
  records.write_records(str(tmp_path / "arms" / "text"), [make_arm("text", i) for i in range(16)],
                        source="test")
  cfg = data_config(str(tmp_path), mixture={"damaged": 3.0, "text": 1.0}, max_skip_fraction=0.5)
  it = pipeline.make_train_iterator(cfg, LAYOUT, tok, process_index=0, process_count=1, seed=0)
  for _ in range(80):
    next(it)
  stats = pipeline.pipeline_stats(it)
  assert stats["skip_reasons"]["corrupt_record"] >= 1, stats
  assert stats["corrupt_files"] == {path: stats["skip_reasons"]["corrupt_record"]}
  state = it.get_state()  # the counts resume with the data position
  fresh = pipeline.make_train_iterator(cfg, LAYOUT, tok, process_index=0, process_count=1, seed=0)
  fresh.set_state(state)
  assert pipeline.pipeline_stats(fresh)["corrupt_files"] == stats["corrupt_files"]
  # under a strict threshold the same shard stops the run with a DataError naming the file
  strict = data_config(str(tmp_path), mixture={"damaged": 1.0}, max_skip_fraction=0.001,
                       skip_check_min_records=1)
  it = pipeline.make_train_iterator(strict, LAYOUT, tok, process_index=0, process_count=1, seed=0)
  with pytest.raises(DataError, match=r"corrupt_record.*corrupt records by file: \{'" + path):
    for _ in range(200):
      next(it)
