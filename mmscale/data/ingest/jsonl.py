"""Generic captions: JSONL of {image path, caption} -> `caption` records.

Input: JSONL files (comma-separated paths or globs); keys --image_key (default "image") and
--text_key (default "caption"); image paths resolve against --image_root (default: the JSONL
file's folder):
```
{"image": "images/0001.jpg", "caption": "a red bus on a bridge", "id": "0001"}
```
"""

import os
from typing import Iterator

from mmscale.data.ingest import common
from mmscale.data.ingest.common import Skip, Skipped
from mmscale.data.ingest.webdataset import expand_inputs


class JsonlCaptionSource:
  """Reads image-path + caption JSONL; see the module docstring."""

  def __init__(self, input_spec: str, options: common.IngestOptions):
    self.paths = expand_inputs(input_spec)
    self.options = options
    self.image_key = options.image_key or "image"
    self.text_key = options.text_key or "caption"

  def describe(self) -> str:
    return "jsonl:" + ",".join(os.path.basename(p) for p in self.paths)

  def units(self, target: int) -> list:
    return common.jsonl_units(self.paths, target)

  def read(self, unit: dict) -> Iterator[common.Item]:
    path = unit["path"]
    root = self.options.image_root or os.path.dirname(os.path.abspath(path))
    for offset, line in common.iter_lines(unit):
      where = f"{path}@{offset}"
      try:
        obj = common.parse_json(line, where)
        if not isinstance(obj, dict):
          raise Skip("bad_json", "line is not an object")
        text = obj.get(self.text_key)
        if not isinstance(text, str):
          raise Skip("missing_text", f"no string {self.text_key!r}")
        image = common.read_image_file(root, obj.get(self.image_key),
                                       self.options.max_image_pixels)
        rid = str(obj.get("id", f"{os.path.basename(path)}@{offset}"))
        yield common.caption_record(rid, image, text, {"image_path": obj[self.image_key]})
      except Skip as e:
        yield Skipped(e.reason, where, e.detail)
