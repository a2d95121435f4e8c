"""Output shards of a knowledge job: atomic shard files, per-shard done markers, the manifest.

Resumability: a job's unit of work is one output shard. A shard file is written under a
temporary name and renamed, then its marker `_progress/<shard>.json` (counts, usage) is written;
a rerun skips every shard whose marker and file exist. The manifest (docs/data_format.md) is
written last, only once every shard is done, so a directory with a manifest is complete.
"""
import glob
import json
import os
import uuid

from array_record.python import array_record_module

from mmscale.data import records

PROGRESS = "_progress"
SUMMARY = "summary.json"


def marker_path(out_dir: str, name: str) -> str:
  return os.path.join(out_dir, PROGRESS, name + ".json")


def is_done(out_dir: str, name: str) -> bool:
  return os.path.isfile(marker_path(out_dir, name)) and os.path.isfile(os.path.join(out_dir, name))


def _write_json(path: str, obj) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f"{path}.{uuid.uuid4().hex}.tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1, sort_keys=True)
  os.replace(tmp, path)


def write_shard(out_dir: str, name: str, recs: list, marker: dict) -> None:
  """Writes `recs` as shard `name` atomically, then its done marker (with num_records, counts)."""
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, name)
  tmp = f"{path}.{uuid.uuid4().hex}.tmp"
  writer = array_record_module.ArrayRecordWriter(tmp, records.WRITER_OPTIONS)
  kinds: dict = {}
  try:
    for rec in recs:
      writer.write(records.encode_record(rec))
      kinds[rec["kind"]] = kinds.get(rec["kind"], 0) + 1
  finally:
    writer.close()
  os.replace(tmp, path)
  _write_json(marker_path(out_dir, name), {**marker, "num_records": len(recs), "kinds": kinds})


def read_marker(out_dir: str, name: str) -> dict:
  with open(marker_path(out_dir, name)) as f:
    return json.load(f)


def finalize(out_dir: str, names: list, *, source: str, provenance: list) -> dict:
  """Manifest over `names` (all done); removes shard files of other shardings."""
  markers = [read_marker(out_dir, n) for n in names]
  counts: dict = {}
  for m in markers:
    for k, v in m["kinds"].items():
      counts[k] = counts.get(k, 0) + v
  for path in glob.glob(os.path.join(out_dir, "records-*-of-*.arrayrecord")):
    if os.path.basename(path) not in names:
      os.remove(path)
  return records.write_manifest(out_dir, [(n, m["num_records"]) for n, m in zip(names, markers)],
                                counts, source=source, provenance=provenance)


def clear_manifest(out_dir: str) -> None:
  """A job that (re)starts writing into `out_dir` makes it incomplete until it finishes."""
  path = os.path.join(out_dir, records.MANIFEST)
  if os.path.exists(path):
    os.remove(path)


def mark_pending(out_dir: str, name: str) -> None:
  """Shard `name` ran but is unfinished (transport failures): never treat it as empty."""
  _write_json(marker_path(out_dir, name)[:-5] + ".pending", {"shard": name})


def is_pending(out_dir: str, name: str) -> bool:
  return os.path.exists(marker_path(out_dir, name)[:-5] + ".pending")


def clear_pending(out_dir: str) -> None:
  for path in glob.glob(os.path.join(out_dir, PROGRESS, "*.pending")):
    os.remove(path)
