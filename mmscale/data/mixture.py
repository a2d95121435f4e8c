"""Weighted mixture of data components (`data.mixture`, {name: weight}) as one grain MapDataset.

A component is a random-access source of records. A mixture name is looked up in
`data.sources` ({name: spec}, optional) and otherwise means the knowledge-world arm
`world_dir/arms/<name>`. Specs, by `type` (registry `COMPONENTS`):
```
{"type": "records", "dir": "/data/cc3m"}                      # any record folder (e.g. ingested)
{"type": "tfds", "name": "coco_captions", "split": "train",   # a tfds dataset in array_record
 "data_dir": "~/tensorflow_datasets", "image_key": "image", "text_key": "caption"}
```
tfds examples become `caption` records on the fly (`mmscale.data.ingest.tfds_source`), so every
component feeds the same decode/tokenise path. Each component is shuffled with its own seed, repeated
forever (reshuffled every epoch by grain), and sliced for this process *before* mixing. Slicing
per arm rather than the mixed stream matters: `MapDataset.mix` interleaves arms in a fixed
periodic pattern, so slicing the mixed stream with a stride equal to that period (weights 1:1
and 2 processes) would hand each process a single arm. Per arm, process p of P reads positions
p, p+P, ... of the arm's global shuffled stream: disjoint across processes, their union is the
whole stream, and every process realises the mixture weights.

Cost note: grain's stateless `index_shuffle` takes ~5-50 us per index for arms of 10^3..10^6
records but milliseconds for arms of a few dozen; only toy arms notice.
"""

import bisect
import logging
import os
import zlib
from typing import Mapping

import grain
import numpy as np

from mmscale.data import records
from mmscale.data.ingest import common as ingest_common
from mmscale.data.ingest import tfds_source
from mmscale.errors import ConfigError, UnknownNameError
from mmscale.registry import Registry


def normalised_weights(mixture: Mapping[str, float]) -> dict[str, float]:
  """{arm: weight} -> weights summing to 1, dropping arms of weight 0 (sorted by arm name)."""
  if not mixture:
    raise ConfigError("data.mixture", "empty; give {arm: weight}")
  out = {}
  for arm, w in sorted(dict(mixture).items()):
    if not isinstance(w, (int, float)) or w < 0 or not np.isfinite(w):
      raise ConfigError(f"data.mixture.{arm}", f"weight must be a finite number >= 0, got {w!r}")
    if w > 0:
      out[arm] = float(w)
  total = sum(out.values())
  if total <= 0:
    raise ConfigError("data.mixture", "all weights are 0")
  return {arm: w / total for arm, w in out.items()}


def arm_dir(world_dir: str, arm: str) -> str:
  return os.path.join(world_dir, "arms", arm)


def arm_seed(seed: int, arm: str) -> int:
  """A uint32 shuffle seed per (seed, arm), independent of which other arms are mixed."""
  return int(np.random.SeedSequence([int(seed) % 2**32, zlib.crc32(arm.encode())])
             .generate_state(1)[0])


def _record_dir_source(path: str, field: str) -> grain.MapDataset:
  """A record folder as a MapDataset of serialized records."""
  if not os.path.isdir(path):
    raise ConfigError(field, f"no record directory {path}")
  manifest = records.read_manifest(path)
  if not manifest.get("num_records"):
    raise ConfigError(field, f"record directory {path} holds no records")
  return grain.MapDataset.source(CorruptSkippingSource(records.shard_paths(path)))


class CorruptSkippingSource:
  """grain's ArrayRecordDataSource read one record at a time, a corrupt record becoming a skip
  marker `{"skip": "corrupt_record", "file": shard path}` instead of an exception.

  ArrayRecord (Riegeli) reports a damaged chunk as a RuntimeError ("Corrupted Riegeli/records
  file: ...") on reading any record of that chunk; one damaged chunk must cost its records, not
  the run. The marker is counted by reason and file (transforms.SkipCountingIterator) under
  data.max_skip_fraction. No `__getitems__`: a batched read would lose a whole batch to one bad
  record.
  """

  def __init__(self, paths: list[str]):
    self.paths = list(paths)
    self.source = grain.sources.ArrayRecordDataSource(self.paths)
    sizes = [len(grain.sources.ArrayRecordDataSource([p])) for p in self.paths]
    self.ends = np.cumsum(sizes).tolist()

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int):
    try:
      return self.source[index]
    except RuntimeError as e:
      if "Riegeli" not in str(e) and "Corrupt" not in str(e):
        raise
      path = self.paths[bisect.bisect_right(self.ends, index)]
      logging.warning("skipping corrupt record %d of %s: %s", index, path, e)
      return {"skip": "corrupt_record", "file": path}

  def __repr__(self) -> str:
    return f"CorruptSkippingSource({self.paths})"


def _records_component(name: str, spec: dict, field: str) -> grain.MapDataset:
  if not spec.get("dir"):
    raise ConfigError(f"{field}.dir", "missing: the record folder to read")
  return _record_dir_source(os.path.expanduser(str(spec["dir"])), field)


def _tfds_component(name: str, spec: dict, field: str) -> grain.MapDataset:
  if not spec.get("name"):
    raise ConfigError(f"{field}.name", "missing: the tfds dataset name")
  image_key = str(spec.get("image_key") or "image")
  split = str(spec.get("split") or "train")
  try:
    source = tfds_source.open_data_source(
        str(spec["name"]), split, os.path.expanduser(str(spec.get("data_dir") or "")), image_key)
  except Exception as e:  # tfds raises many types for a missing or unprepared dataset
    raise ConfigError(field, f"cannot open tfds dataset {spec['name']!r} split {split!r} "
                      f"({type(e).__name__}: {e}); it must be prepared in array_record "
                      "format under data_dir") from e
  if not len(source):
    raise ConfigError(field, f"tfds dataset {spec['name']!r} split {split!r} is empty")
  return grain.MapDataset.source(source).map(
      _TfdsToRecord(f"{spec['name']}/{split}", image_key, str(spec.get("text_key") or "caption")))


class _TfdsToRecord(grain.transforms.Map):
  """tfds example -> serialized caption record, or {"skip": reason} (counted downstream)."""

  def __init__(self, prefix: str, image_key: str, text_key: str):
    self.prefix, self.image_key, self.text_key = prefix, image_key, text_key

  def map(self, example: dict):
    try:
      return tfds_source.record_bytes(example, self.prefix, self.image_key,
                                      self.text_key)
    except ingest_common.Skip as e:
      return {"skip": e.reason}


# data.sources[name].type -> factory(name, spec, field) of a MapDataset of serialized records.
COMPONENTS = Registry("data source type")
COMPONENTS.add("records", _records_component)
COMPONENTS.add("tfds", _tfds_component)


def _as_dict(spec) -> dict:
  return spec.to_dict() if hasattr(spec, "to_dict") else dict(spec)


def component_source(world_dir: str, name: str,
                     sources: Mapping[str, Mapping] | None = None) -> grain.MapDataset:
  """The finite, unshuffled MapDataset of serialized records behind mixture entry `name`."""
  sources = sources or {}
  if name not in sources:
    return _record_dir_source(arm_dir(world_dir, name), f"data.mixture.{name}")
  spec, field = _as_dict(sources[name]), f"data.sources.{name}"
  kind = spec.get("type")
  try:
    factory = COMPONENTS.get(kind)
  except UnknownNameError as e:  # the config field names where the bad type was written
    raise ConfigError(f"{field}.type", f"{kind!r} is not one of {COMPONENTS.names()}") from e
  return factory(name, spec, field)


def arm_dataset(world_dir: str, arm: str, *, seed: int, process_index: int = 0,
                process_count: int = 1,
                sources: Mapping[str, Mapping] | None = None) -> grain.MapDataset:
  """Infinite MapDataset of {"arm", "data": serialized record} (or {"arm", "skip": reason}) for
  this process's slice of component `arm`."""
  ds = component_source(world_dir, arm, sources).shuffle(seed=arm_seed(seed, arm)).repeat()
  return ds[process_index::process_count].map(_TagArm(arm))


class _TagArm(grain.transforms.Map):
  """Attaches the arm name (picklable for worker processes, unlike a closure)."""

  def __init__(self, arm: str):
    self.arm = arm

  def map(self, data) -> dict:
    if isinstance(data, dict):  # a skip marker from the source or a component's conversion
      return {"arm": self.arm, **data}
    return {"arm": self.arm, "data": data}


def mix_arms(world_dir: str, mixture: Mapping[str, float], *, seed: int, process_index: int = 0,
             process_count: int = 1,
             sources: Mapping[str, Mapping] | None = None) -> grain.MapDataset:
  """Deterministic weighted interleave of the components (grain `MapDataset.mix`), infinite."""
  weights = normalised_weights(mixture)
  arms = [arm_dataset(world_dir, arm, seed=seed, process_index=process_index,
                      process_count=process_count, sources=sources) for arm in weights]
  if len(arms) == 1:
    return arms[0]
  return grain.MapDataset.mix(arms, list(weights.values()))
