"""Record directories: round trip, manifest, and a clear error for every kind of damage."""
import io
import json
import os

import msgpack
import numpy as np
import pytest
from PIL import Image

from mmscale.data import records
from mmscale.errors import RecordFormatError


def _png(value: int) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(buf, format="PNG")
  return buf.getvalue()


def _records(n: int = 7) -> list:
  out = []
  for i in range(n):
    if i % 3 == 2:
      out.append({"id": f"t{i}", "kind": "text", "images": [],
                  "segments": [{"text": f"fact {i} .", "loss": True}], "descriptor": None,
                  "meta": {}})
    else:
      out.append({"id": f"c{i}", "kind": "caption", "images": [_png(i)],
                  "segments": [{"image": 0}, {"text": f"caption {i} .", "loss": True}],
                  "descriptor": {"objects": [{"name": "circle", "attributes": ["red"],
                                              "count": i}], "relations": []},
                  "meta": {"scene_id": f"s{i}"}})
  return out


@pytest.fixture
def record_dir(tmp_path):
  d = str(tmp_path / "recs")
  records.write_records(d, _records(), num_shards=3, source="unit",
                        provenance=[records.provenance_entry("make", {"n": 7})])
  return d


def test_round_trip_and_manifest(record_dir):
  got = sorted(records.iter_records(record_dir), key=lambda r: r["id"])
  want = sorted(_records(), key=lambda r: r["id"])
  assert got == want
  m = records.read_manifest(record_dir)
  assert m["format"] == "mmscale.records" and m["schema_version"] == 1
  assert m["num_records"] == 7 and m["counts"] == {"caption": 5, "text": 2}
  assert [s["num_records"] for s in m["shards"]] == [3, 2, 2]
  assert m["source"] == "unit" and m["provenance"][0]["stage"] == "make"
  assert m["provenance"][0]["args"] == {"n": 7} and "T" in m["provenance"][0]["time"]
  paths = records.shard_paths(record_dir)
  assert [os.path.basename(p) for p in paths] == [f"records-0000{i}-of-00003.arrayrecord"
                                                  for i in range(3)]


def test_random_access_matches_iteration(record_dir):
  reader = records.RecordReader(record_dir)
  assert len(reader) == 7
  assert [reader[i] for i in range(7)] == list(records.iter_records(record_dir))
  assert reader[-1]["id"] == reader[6]["id"]
  with pytest.raises(IndexError):
    reader[7]
  reader.close()


def test_rewrite_removes_stale_shards(record_dir):
  records.write_records(record_dir, _records(2), num_shards=1, source="unit")
  assert len(os.listdir(record_dir)) == 2  # manifest + one shard
  assert len(list(records.iter_records(record_dir))) == 2


def _edit_manifest(record_dir, **changes):
  path = os.path.join(record_dir, "manifest.json")
  with open(path) as f:
    m = json.load(f)
  for k, v in changes.items():
    if v is None:
      m.pop(k)
    else:
      m[k] = v
  with open(path, "w") as f:
    json.dump(m, f)
  return path


@pytest.mark.parametrize("changes,needle", [
    ({"schema_version": 2}, "schema_version is 2, expected 1"),
    ({"schema_version": None}, "schema_version is None, expected 1"),
    ({"format": "other"}, "expected 'mmscale.records'"),
])
def test_wrong_manifest_is_rejected(record_dir, changes, needle):
  path = _edit_manifest(record_dir, **changes)
  with pytest.raises(RecordFormatError, match=needle) as e:
    list(records.iter_records(record_dir))
  assert path in str(e.value)


def test_missing_manifest(tmp_path):
  with pytest.raises(RecordFormatError, match="manifest not found") as e:
    records.read_manifest(str(tmp_path))
  assert str(tmp_path / "manifest.json") in str(e.value)


def test_truncated_shard_names_the_shard(record_dir):
  shard = records.shard_paths(record_dir)[1]
  with open(shard, "rb") as f:
    data = f.read()
  with open(shard, "wb") as f:
    f.write(data[:len(data) // 2])
  with pytest.raises(RecordFormatError, match="truncated") as e:
    list(records.iter_records(record_dir))
  assert shard in str(e.value)
  with pytest.raises(RecordFormatError, match="truncated"):
    records.shard_paths(record_dir)


def test_missing_shard_names_the_shard(record_dir):
  shard = records.shard_paths(record_dir)[2]
  os.remove(shard)
  with pytest.raises(RecordFormatError, match="does not exist") as e:
    records.RecordReader(record_dir)
  assert shard in str(e.value)


def test_corrupt_chunk_names_the_shard(tmp_path):
  d = str(tmp_path / "big")
  recs = [{"id": str(i), "kind": "text", "images": [],
           "segments": [{"text": "word " * 50 + str(i), "loss": True}]} for i in range(50)]
  records.write_records(d, recs, source="unit")
  shard = records.shard_paths(d)[0]
  data = bytearray(open(shard, "rb").read())
  for i in range(200, 600):
    data[i] ^= 0x5A
  open(shard, "wb").write(bytes(data))
  with pytest.raises(RecordFormatError) as e:
    list(records.iter_records(d))
  assert shard in str(e.value)


def _raw(**changes) -> bytes:
  rec = {"id": "x", "kind": "caption", "images": [b"png"],
         "segments": [{"image": 0}, {"text": "a", "loss": True}], "descriptor": None, "meta": {}}
  rec.update(changes)
  return msgpack.packb(rec, use_bin_type=True)


@pytest.mark.parametrize("changes,needle", [
    ({"kind": "movie"}, "kind 'movie'"),
    ({"segments": [{"image": 1}]}, "index 1 out of range"),
    ({"segments": [{"image": -1}]}, "out of range"),
    ({"segments": [{"text": "a"}]}, "'text' and 'loss'"),
    ({"segments": [{"text": "a", "loss": 1}]}, "loss"),
    ({"segments": [{"audio": 0}]}, "'image' or 'text'"),
    ({"segments": []}, "non-empty"),
    ({"images": ["not bytes"]}, "bytes"),
    ({"kind": "text"}, "cannot hold image"),
    ({"kind": "pair"}, "at least 2 images"),
    ({"descriptor": [1]}, "descriptor"),
])
def test_decode_rejects_bad_records(changes, needle):
  with pytest.raises(RecordFormatError, match=needle) as e:
    records.decode_record(_raw(**changes), where="shard-7 record 3")
  assert "shard-7 record 3" in str(e.value)


def test_decode_rejects_garbage_and_encode_validates():
  with pytest.raises(RecordFormatError, match="msgpack|must be a dict"):
    records.decode_record(b"\xc1\x00garbage")
  with pytest.raises(RecordFormatError, match="lacks keys"):
    records.decode_record(msgpack.packb({"id": "x"}))
  with pytest.raises(RecordFormatError, match="out of range"):
    records.encode_record({"id": "x", "kind": "vqa", "images": [],
                           "segments": [{"image": 0}]})
  rec = records.decode_record(records.encode_record(
      {"id": "y", "kind": "text", "images": [], "segments": [{"text": "t", "loss": False}]}))
  assert rec["descriptor"] is None and rec["meta"] == {}
