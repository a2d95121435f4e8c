"""The shared shape of sources that read one JSON object per line (jsonl captions, interleaved).

Subclasses set `name` and the default keys and turn one parsed object into a record; splitting
files into byte-range units, resolving the image root and turning `Skip` into `Skipped` with a
`file@offset` location are done here once.
"""

import abc
import os
from typing import Any, Iterator

from mmscale.data.ingest import common
from mmscale.data.ingest.common import Skip, Skipped
from mmscale.data.ingest.webdataset import expand_inputs


class JsonLinesSource(abc.ABC):
  """Base of JSONL sources: `record(path, offset, obj, image_root) -> record` is theirs."""

  name = ""
  default_image_key = ""
  default_text_key = ""

  def __init__(self, input_spec: str, options: common.IngestOptions):
    self.paths = expand_inputs(input_spec)
    self.options = options
    self.image_key = options.image_key or self.default_image_key
    self.text_key = options.text_key or self.default_text_key

  def describe(self) -> str:
    return f"{self.name}:" + ",".join(os.path.basename(p) for p in self.paths)

  def units(self, target: int) -> list:
    return common.jsonl_units(self.paths, target)

  @abc.abstractmethod
  def record(self, path: str, offset: int, obj: Any, image_root: str) -> dict:
    """One parsed JSON value -> a record; raises `Skip` for a bad line."""

  def read(self, unit: dict) -> Iterator[common.Item]:
    path = unit["path"]
    root = self.options.image_root or os.path.dirname(os.path.abspath(path))
    for offset, line in common.iter_lines(unit):
      where = f"{path}@{offset}"
      try:
        yield self.record(path, offset, common.parse_json(line, where), root)
      except Skip as e:
        yield Skipped(e.reason, where, e.detail)
