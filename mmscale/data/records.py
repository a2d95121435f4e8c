"""Record directories: ArrayRecord shards of msgpack examples plus a JSON manifest.

One record is one training or evaluation example (see docs/data_format.md):
```
{"id": str, "kind": "caption"|"interleaved"|"pair"|"vqa"|"text", "images": [bytes, ...],
 "segments": [{"image": int} | {"text": str, "loss": bool}, ...], "descriptor": dict|None,
 "meta": dict}
```
Why these choices: ArrayRecord gives cheap random access (grain samples globally shuffled indices)
and shards written with `group_size:1` make one read touch one chunk; msgpack keeps image bytes
as bytes (no base64) and is language neutral; the manifest is the only thing a reader trusts, so
it is written last and checked against every shard (a truncated shard silently opens as empty in
array_record, so the per-shard record count is what catches it).
"""
import bisect
import datetime
import glob
import json
import os
from typing import Any, Iterable, Iterator, Sequence

import msgpack
from array_record.python import array_record_module

from mmscale.errors import RecordFormatError

FORMAT = "mmscale.records"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
KINDS = ("caption", "interleaved", "pair", "vqa", "text")
WRITER_OPTIONS = "group_size:1"
_SHARD_GLOB = "records-*-of-*.arrayrecord"
_READ_CHUNK = 256


def shard_name(index: int, num_shards: int) -> str:
  """File name of shard `index` of `num_shards` (fixed so tools can glob it)."""
  return f"records-{index:05d}-of-{num_shards:05d}.arrayrecord"


def provenance_entry(stage: str, args: dict | None = None, time: str | None = None) -> dict:
  """One provenance step `{"stage", "time", "args"}`; append it to the input's list to chain."""
  when = time or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
  return {"stage": str(stage), "time": when, "args": dict(args or {})}


def _fail(where: str, message: str) -> None:
  raise RecordFormatError(f"{where}: {message}")


def _check_segment(seg: Any, num_images: int, where: str) -> None:
  if not isinstance(seg, dict):
    _fail(where, f"segment must be a dict, got {type(seg).__name__}")
  if "image" in seg:
    idx = seg["image"]
    if set(seg) != {"image"} or not isinstance(idx, int) or isinstance(idx, bool):
      _fail(where, f"image segment must be {{'image': int}}, got {seg!r}")
    if not 0 <= idx < num_images:
      _fail(where, f"image segment index {idx} out of range for {num_images} images")
  elif "text" in seg:
    if set(seg) != {"text", "loss"}:
      _fail(where, f"text segment must have exactly keys 'text' and 'loss', got {sorted(seg)}")
    if not isinstance(seg["text"], str) or not isinstance(seg["loss"], bool):
      _fail(where, "text segment needs 'text': str and 'loss': bool")
  else:
    _fail(where, f"segment must hold 'image' or 'text', got keys {sorted(seg)}")


def validate_record(rec: Any, where: str = "record") -> dict:
  """Checks a record against the schema and returns it; raises RecordFormatError naming `where`."""
  if not isinstance(rec, dict):
    _fail(where, f"record must be a dict, got {type(rec).__name__}")
  missing = {"id", "kind", "images", "segments"} - set(rec)
  if missing:
    _fail(where, f"record lacks keys {sorted(missing)}")
  if not isinstance(rec["id"], str):
    _fail(where, "'id' must be a str")
  kind = rec["kind"]
  if kind not in KINDS:
    _fail(where, f"kind {kind!r} is not one of {list(KINDS)}")
  images = rec["images"]
  if not isinstance(images, list) or not all(isinstance(b, bytes) for b in images):
    _fail(where, "'images' must be a list of encoded image bytes")
  segments = rec["segments"]
  if not isinstance(segments, list) or not segments:
    _fail(where, "'segments' must be a non-empty list")
  for seg in segments:
    _check_segment(seg, len(images), where)
  num_image_segments = sum("image" in s for s in segments)
  if kind == "text" and num_image_segments:
    _fail(where, "a 'text' record cannot hold image segments")
  if kind == "pair" and len(images) < 2:
    _fail(where, f"a 'pair' record needs at least 2 images, got {len(images)}")
  rec.setdefault("descriptor", None)
  rec.setdefault("meta", {})
  if rec["descriptor"] is not None and not isinstance(rec["descriptor"], dict):
    _fail(where, "'descriptor' must be a dict or None")
  if not isinstance(rec["meta"], dict):
    _fail(where, "'meta' must be a dict")
  return rec


def encode_record(rec: dict) -> bytes:
  """Validates then serialises a record with msgpack (bin type keeps image bytes as bytes)."""
  rec = validate_record(dict(rec))
  return msgpack.packb(rec, use_bin_type=True)


def decode_record(data: bytes, where: str = "record") -> dict:
  """Parses and validates one serialised record; raises RecordFormatError naming `where`."""
  try:
    rec = msgpack.unpackb(data, raw=False, strict_map_key=False)
  except Exception as e:  # msgpack raises several unrelated exception types
    raise RecordFormatError(f"{where}: not a msgpack record ({type(e).__name__}: {e})") from e
  return validate_record(rec, where)


def _remove_old_outputs(out_dir: str) -> None:
  """Deletes a previous manifest and shards so stale shards can never be mistaken for new ones."""
  manifest = os.path.join(out_dir, MANIFEST)
  if os.path.exists(manifest):
    os.remove(manifest)
  for path in glob.glob(os.path.join(out_dir, _SHARD_GLOB)):
    os.remove(path)


def write_records(out_dir: str, records: Iterable[dict], *, num_shards: int = 1, source: str,
                  provenance: Sequence[dict] = ()) -> dict:
  """Writes records round-robin over `num_shards` shards, then the manifest; returns it.

  Round-robin lets `records` be a stream of unknown length while shards stay balanced; reading
  order is therefore shard by shard, not the input order, once num_shards > 1.
  """
  if num_shards < 1:
    raise ValueError(f"num_shards must be >= 1, got {num_shards}")
  os.makedirs(out_dir, exist_ok=True)
  _remove_old_outputs(out_dir)
  names = [shard_name(i, num_shards) for i in range(num_shards)]
  writers = [array_record_module.ArrayRecordWriter(os.path.join(out_dir, n), WRITER_OPTIONS)
             for n in names]
  per_shard = [0] * num_shards
  counts: dict[str, int] = {}
  try:
    for i, rec in enumerate(records):
      data = encode_record(rec)
      writers[i % num_shards].write(data)
      per_shard[i % num_shards] += 1
      counts[rec["kind"]] = counts.get(rec["kind"], 0) + 1
  finally:
    for w in writers:
      w.close()
  return write_manifest(out_dir, list(zip(names, per_shard)), counts, source=source,
                        provenance=provenance)


def write_manifest(out_dir: str, shards: Sequence[tuple[str, int]], counts: dict[str, int], *,
                   source: str, provenance: Sequence[dict] = ()) -> dict:
  """Writes `out_dir/manifest.json` (atomically, last) for shards already on disk; returns it.

  Every writer of record directories (this module, ingestion, the knowledge engine) ends here,
  so the manifest format has one definition. `shards` = [(file name, number of records)].
  """
  steps = [dict(p) for p in provenance]
  for p in steps:
    if "stage" not in p:
      raise ValueError(f"provenance entry {p!r} lacks 'stage'")
    p.setdefault("time", provenance_entry(p["stage"])["time"])
    p.setdefault("args", {})
  manifest = {
      "format": FORMAT, "schema_version": SCHEMA_VERSION,
      "num_records": sum(n for _, n in shards), "counts": dict(sorted(counts.items())),
      "shards": [{"path": name, "num_records": n} for name, n in shards],
      "source": str(source), "provenance": steps}
  tmp = os.path.join(out_dir, MANIFEST + ".tmp")
  with open(tmp, "w") as f:
    json.dump(manifest, f, indent=1)
  os.replace(tmp, os.path.join(out_dir, MANIFEST))
  return manifest


def read_manifest(record_dir: str) -> dict:
  """Loads and checks `record_dir/manifest.json`; errors name the file and the expected value."""
  path = os.path.join(record_dir, MANIFEST)
  expect = f"expected a record directory with format '{FORMAT}', schema_version {SCHEMA_VERSION}"
  if not os.path.isfile(path):
    _fail(path, f"manifest not found; {expect}")
  try:
    with open(path) as f:
      manifest = json.load(f)
  except (OSError, ValueError) as e:
    raise RecordFormatError(f"{path}: unreadable manifest ({e}); {expect}") from e
  if not isinstance(manifest, dict):
    _fail(path, f"manifest must be a JSON object; {expect}")
  if manifest.get("format") != FORMAT:
    _fail(path, f"format is {manifest.get('format')!r}, expected '{FORMAT}'")
  if manifest.get("schema_version") != SCHEMA_VERSION:
    _fail(path, f"schema_version is {manifest.get('schema_version')!r}, expected {SCHEMA_VERSION}")
  shards = manifest.get("shards")
  if not isinstance(shards, list) or not all(
      isinstance(s, dict) and isinstance(s.get("path"), str)
      and isinstance(s.get("num_records"), int) for s in shards):
    _fail(path, "'shards' must be a list of {'path': str, 'num_records': int}")
  if manifest.get("num_records") != sum(s["num_records"] for s in shards):
    _fail(path, "'num_records' differs from the sum of the shards' num_records")
  return manifest


def _close(reader: Any) -> None:
  """Closes a reader; array_record raises on close of a damaged file, already reported."""
  try:
    reader.close()
  except RuntimeError:
    pass


def _open_shard(path: str, expected: int, options: str = "") -> Any:
  """Opens a shard and checks its record count, the one cheap check that catches truncation."""
  if not os.path.isfile(path):
    _fail(path, "shard listed in the manifest does not exist")
  try:
    reader = array_record_module.ArrayRecordReader(path, options)
    found = reader.num_records()
  except RuntimeError as e:
    raise RecordFormatError(f"{path}: unreadable ArrayRecord shard ({e})") from e
  if found != expected:
    _close(reader)
    _fail(path, f"shard holds {found} records but the manifest says {expected} "
          "(truncated or corrupt shard)")
  return reader


def shard_paths(record_dir: str, verify: bool = True) -> list[str]:
  """Absolute shard paths in manifest order; `verify` opens each to check its record count."""
  manifest = read_manifest(record_dir)
  paths = []
  for shard in manifest["shards"]:
    path = os.path.abspath(os.path.join(record_dir, shard["path"]))
    if verify:
      _close(_open_shard(path, shard["num_records"]))
    paths.append(path)
  return paths


def iter_records(record_dir: str) -> Iterator[dict]:
  """Yields decoded records shard by shard; any damage raises RecordFormatError naming the shard."""
  manifest = read_manifest(record_dir)
  for shard in manifest["shards"]:
    path = os.path.abspath(os.path.join(record_dir, shard["path"]))
    n = shard["num_records"]
    reader = _open_shard(path, n)
    try:
      for start in range(0, n, _READ_CHUNK):
        idx = list(range(start, min(n, start + _READ_CHUNK)))
        try:
          blobs = reader.read(idx)
        except RuntimeError as e:
          raise RecordFormatError(f"{path}: corrupt records {idx[0]}..{idx[-1]} ({e})") from e
        for i, blob in zip(idx, blobs):
          yield decode_record(blob, where=f"{path} record {i}")
    finally:
      _close(reader)


class RecordReader:
  """Random access over a record directory: `len(r)`, `r[i]` -> decoded record (global index).

  Global index order is the manifest's shard order, the same order grain's ArrayRecordDataSource
  uses over `shard_paths(dir)`, so an index means the same record to both.
  """

  _OPTIONS = "readahead_buffer_size:0,max_parallelism:0"

  def __init__(self, record_dir: str):
    self.manifest = read_manifest(record_dir)
    self._readers, self._starts, total = [], [], 0
    try:
      for shard in self.manifest["shards"]:
        path = os.path.abspath(os.path.join(record_dir, shard["path"]))
        self._readers.append((path, _open_shard(path, shard["num_records"], self._OPTIONS)))
        self._starts.append(total)
        total += shard["num_records"]
    except RecordFormatError:
      self.close()
      raise
    self._len = total

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, index: int) -> dict:
    if not -self._len <= index < self._len:
      raise IndexError(f"record index {index} out of range for {self._len} records")
    index %= self._len
    shard = bisect.bisect_right(self._starts, index) - 1  # empty shards share the next start
    path, reader = self._readers[shard]
    local = index - self._starts[shard]
    try:
      blob = reader.read([local])[0]
    except RuntimeError as e:
      raise RecordFormatError(f"{path}: corrupt record {local} ({e})") from e
    return decode_record(blob, where=f"{path} record {local}")

  def close(self) -> None:
    for _, reader in self._readers:
      _close(reader)
    self._readers = []
