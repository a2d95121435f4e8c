"""Ingestion (mmscale/data/ingest, tools/ingest.py) on tiny inputs built here: record counts,
text and pixel round trips, every bad input skipped and counted by reason, the skip threshold,
and resume (finished shards are not redone)."""

import io
import json
import os
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from mmscale.data import records
from mmscale.data.ingest import beam_job, common
from mmscale.errors import DataError

BEAM = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pixels(i: int, w: int = 12, h: int = 10) -> np.ndarray:
  rng = np.random.default_rng(i)
  return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def encode(arr: np.ndarray, fmt: str = "PNG") -> bytes:
  buf = io.BytesIO()
  Image.fromarray(arr).save(buf, format=fmt)
  return buf.getvalue()


def decoded(data: bytes) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def ingest(kind, inp, out, **kw):
  opts = kw.pop("options", common.IngestOptions())
  return beam_job.run_ingest(kind, str(inp), str(out), options=opts,
                             beam_args=kw.pop("beam_args", BEAM), **kw)


def by_id(out) -> dict:
  return {r["id"]: r for r in records.iter_records(str(out))}


def report(out) -> dict:
  with open(os.path.join(out, beam_job.SKIP_REPORT)) as f:
    return json.load(f)


@pytest.fixture()
def wds(tmp_path):
  """Two tars of 3 good samples each (png + txt, jpg + json) plus every bad member kind."""
  paths = []
  for t in range(2):
    path = tmp_path / f"shard-{t}.tar"
    with tarfile.open(path, "w") as tar:
      for i in range(3):
        key = f"{t:03d}{i:03d}"
        if i % 2:
          add_member(tar, f"{key}.jpg", encode(pixels(10 * t + i), "JPEG"))
          add_member(tar, f"{key}.json", json.dumps({"caption": f"json caption {t} {i}",
                                                     "url": "http://x/y.jpg"}).encode())
        else:
          add_member(tar, f"{key}.png", encode(pixels(10 * t + i)))
          add_member(tar, f"{key}.txt", f"text caption {t} {i}".encode())
      if t == 0:
        add_member(tar, "bad001.jpg", b"\xff\xd8\xff\xe0 not really a jpeg")   # bad_image
        add_member(tar, "bad001.txt", b"corrupt")
        add_member(tar, "bad002.png", b"")                                    # empty_image
        add_member(tar, "bad002.txt", b"zero bytes")
        add_member(tar, "bad003.png", encode(pixels(3)))                      # non_utf8
        add_member(tar, "bad003.txt", b"caf\xe9 \xff\xfe")
        add_member(tar, "bad004.png", encode(pixels(4, 200, 200)))            # image_too_large
        add_member(tar, "bad004.txt", b"a bomb")
        add_member(tar, "/etc/bad005.png", encode(pixels(5)))                 # unsafe_path
        add_member(tar, "../bad006.png", encode(pixels(6)))                   # unsafe_path
        add_member(tar, "bad007.png", encode(pixels(7)))                      # bad_json
        add_member(tar, "bad007.json", b"{not json")
    paths.append(path)
  return tmp_path


def test_webdataset_counts_roundtrip_and_bad_members(wds, tmp_path):
  out = tmp_path / "out"
  m = ingest("webdataset", f"{wds}/*.tar", out, num_shards=2, max_skip_fraction=1.0,
             options=common.IngestOptions(max_image_pixels=100 * 100))
  assert m["num_records"] == 6 and m["counts"] == {"caption": 6}
  assert m["source"].startswith("webdataset:") and m["provenance"][0]["stage"] == "ingest"
  recs = by_id(out)
  r = recs["shard-0.tar/000000"]
  assert r["segments"] == [{"image": 0}, {"text": "text caption 0 0", "loss": True}]
  np.testing.assert_array_equal(decoded(r["images"][0]), pixels(0))  # PNG: exact pixels
  r = recs["shard-1.tar/001001"]
  assert r["segments"][1]["text"] == "json caption 1 1"
  assert r["images"][0] == encode(pixels(11), "JPEG")  # JPEG bytes stored as they came
  assert r["meta"]["wds_url"] == "http://x/y.jpg"
  rep = report(out)
  assert rep["reasons"] == {"bad_image": 1, "empty_image": 1, "non_utf8": 1,
                            "image_too_large": 1, "unsafe_path": 2, "bad_json": 1}
  assert rep["records"] == 6 and rep["skipped"] == 7
  assert any("bad004" in e for e in rep["examples"]["image_too_large"])


def test_skip_threshold_fails_with_clear_error(wds, tmp_path):
  out = tmp_path / "out"
  with pytest.raises(DataError, match=r"max_skip_fraction=0.1.*unsafe_path"):
    ingest("webdataset", f"{wds}/shard-0.tar", out, max_skip_fraction=0.1,
           options=common.IngestOptions(max_image_pixels=100 * 100))
  assert report(out)["skipped"] == 7
  assert not os.path.exists(out / records.MANIFEST)  # an over-threshold job is not usable


def test_truncated_tar_keeps_what_was_read(wds, tmp_path):
  data = (wds / "shard-1.tar").read_bytes()
  cut = tmp_path / "cut.tar"
  cut.write_bytes(data[:len(data) // 2 + 100])
  out = tmp_path / "out"
  m = ingest("webdataset", str(cut), out, max_skip_fraction=1.0)
  rep = report(out)
  assert rep["reasons"] == {"bad_archive": 1}
  assert 0 < m["num_records"] < 3


def test_llava_multi_turn_text_only_and_bad_items(tmp_path):
  (tmp_path / "imgs").mkdir()
  for i in range(2):
    (tmp_path / "imgs" / f"{i}.png").write_bytes(encode(pixels(i)))
  convs = [
      {"id": "a", "image": "imgs/0.png", "conversations": [
          {"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A cat."}]},
      {"id": "b", "image": "imgs/1.png", "conversations": [
          {"from": "human", "value": "What colour?\n<image>"}, {"from": "gpt", "value": "Red."},
          {"from": "human", "value": "How many?"}, {"from": "gpt", "value": "Two."}]},
      {"id": "c", "conversations": [{"from": "human", "value": "Hi?"},
                                    {"from": "gpt", "value": "Hello."}]},
      {"id": "d", "image": "imgs/missing.png", "conversations": [
          {"from": "human", "value": "<image>\nQ"}, {"from": "gpt", "value": "A"}]},
      {"id": "e", "image": "../escape.png", "conversations": [
          {"from": "human", "value": "<image>\nQ"}, {"from": "gpt", "value": "A"}]},
  ]
  (tmp_path / "llava.json").write_text(json.dumps(convs))
  out = tmp_path / "out"
  m = ingest("llava", tmp_path / "llava.json", out, num_shards=2, max_skip_fraction=0.5)
  assert m["counts"] == {"vqa": 2, "text": 1}
  recs = by_id(out)
  assert recs["b"]["segments"] == [
      {"image": 0}, {"text": "What colour?", "loss": False}, {"text": "Red.", "loss": True},
      {"text": "How many?", "loss": False}, {"text": "Two.", "loss": True}]
  np.testing.assert_array_equal(decoded(recs["a"]["images"][0]), pixels(0))
  assert recs["c"]["kind"] == "text" and recs["c"]["images"] == []
  assert report(out)["reasons"] == {"missing_image": 1, "unsafe_path": 1}


def test_interleaved_jsonl(tmp_path):
  for i in range(3):
    (tmp_path / f"{i}.png").write_bytes(encode(pixels(i)))
  lines = [
      json.dumps({"id": "d1", "texts": ["Intro.", None, "Middle.", None],
                  "images": [None, "0.png", None, "1.png"]}).encode(),
      json.dumps({"id": "d2", "texts": ["Only text."], "images": [None]}).encode(),
      b'{"id": "d3", "texts": [',                                             # bad_json
      b'{"id": "d4", "texts": ["caf\xe9"], "images": [null]}',                # non_utf8
      json.dumps({"id": "d5", "texts": [None, "x"], "images": ["gone.png", None]}).encode(),
      json.dumps({"id": "d6", "texts": [None, "Last."], "images": ["2.png", None]}).encode(),
  ]
  (tmp_path / "docs.jsonl").write_bytes(b"\n".join(lines) + b"\n")
  out = tmp_path / "out"
  m = ingest("interleaved", tmp_path / "docs.jsonl", out, num_shards=3, max_skip_fraction=0.6)
  assert m["counts"] == {"interleaved": 2, "text": 1}
  d1 = by_id(out)["d1"]
  assert d1["segments"] == [{"text": "Intro.", "loss": True}, {"image": 0},
                            {"text": "Middle.", "loss": True}, {"image": 1}]
  np.testing.assert_array_equal(decoded(d1["images"][1]), pixels(1))
  assert report(out)["reasons"] == {"bad_json": 1, "non_utf8": 1, "missing_image": 1}


def test_jsonl_captions_split_over_shards_cover_every_line(tmp_path):
  lines = []
  for i in range(7):
    (tmp_path / f"{i}.png").write_bytes(encode(pixels(i)))
    lines.append(json.dumps({"id": str(i), "image": f"{i}.png", "caption": f"picture {i}"}))
  lines.insert(3, "this is not json")
  (tmp_path / "caps.jsonl").write_text("\n".join(lines) + "\n")
  out = tmp_path / "out"
  m = ingest("jsonl", tmp_path / "caps.jsonl", out, num_shards=4, max_skip_fraction=0.2)
  assert m["num_records"] == 7 and len(m["shards"]) == 4
  recs = by_id(out)
  assert sorted(recs) == [str(i) for i in range(7)]
  assert recs["5"]["segments"][1]["text"] == "picture 5"
  np.testing.assert_array_equal(decoded(recs["5"]["images"][0]), pixels(5))
  assert report(out)["reasons"] == {"bad_json": 1}


def test_rerun_skips_finished_shards(tmp_path):
  for i in range(6):
    (tmp_path / f"{i}.png").write_bytes(encode(pixels(i)))
  (tmp_path / "caps.jsonl").write_text("".join(
      json.dumps({"image": f"{i}.png", "caption": f"c {i}"}) + "\n" for i in range(6)))
  out = tmp_path / "out"
  first = ingest("jsonl", tmp_path / "caps.jsonl", out, num_shards=3, beam_args=[])  # 2 workers
  shards = [out / s["path"] for s in first["shards"]]
  mtimes = [p.stat().st_mtime_ns for p in shards]
  os.remove(shards[1])  # as if preempted before shard 1 finished
  (out / (shards[1].name + ".incomplete")).write_bytes(b"partial")
  second = ingest("jsonl", tmp_path / "caps.jsonl", out, num_shards=3)
  assert second["shards"] == first["shards"] and second["counts"] == first["counts"]
  assert shards[0].stat().st_mtime_ns == mtimes[0] and shards[2].stat().st_mtime_ns == mtimes[2]
  assert second["provenance"][0]["args"]["shards_resumed"] == 2
  assert len(list(records.iter_records(str(out)))) == 6
  with pytest.raises(DataError, match="different ingest job"):
    ingest("jsonl", tmp_path / "caps.jsonl", out, num_shards=2)


def test_tool_passes_beam_options_and_exits_1_on_too_many_skips(wds, tmp_path, capsys):
  sys.path.insert(0, os.path.join(ROOT, "tools"))
  import ingest as ingest_tool  # pylint: disable=import-outside-toplevel
  args = ["ingest.py", "--source=webdataset", f"--input={wds}/shard-1.tar", f"--out={tmp_path}/ok",
          "--num_shards=1", *BEAM]
  assert ingest_tool.main(args) == 0
  assert "wrote 3 records" in capsys.readouterr().out
  args = ["ingest.py", "--source=webdataset", f"--input={wds}/shard-0.tar", f"--out={tmp_path}/bad",
          "--max_skip_fraction=0.05", *BEAM]
  assert ingest_tool.main(args) == 1
  assert "max_skip_fraction=0.05" in capsys.readouterr().err
