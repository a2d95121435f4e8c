"""Generic captions: JSONL of {image path, caption} -> `caption` records.

Input: JSONL files (comma-separated paths or globs); keys --image_key (default "image") and
--text_key (default "caption"); image paths resolve against --image_root (default: the JSONL
file's folder):
```
{"image": "images/0001.jpg", "caption": "a red bus on a bridge", "id": "0001"}
```
"""

import os
from typing import Any

from mmscale.data.ingest import common
from mmscale.data.ingest.common import Skip
from mmscale.data.ingest.jsonl_lines import JsonLinesSource


class JsonlCaptionSource(JsonLinesSource):
  """Reads image-path + caption JSONL; see the module docstring."""

  name = "jsonl"
  default_image_key = "image"
  default_text_key = "caption"

  def record(self, path: str, offset: int, obj: Any, image_root: str) -> dict:
    if not isinstance(obj, dict):
      raise Skip("bad_json", "line is not an object")
    text = obj.get(self.text_key)
    if not isinstance(text, str):
      raise Skip("missing_text", f"no string {self.text_key!r}")
    image = common.read_image_file(image_root, obj.get(self.image_key),
                                   self.options.max_image_pixels)
    rid = str(obj.get("id", f"{os.path.basename(path)}@{offset}"))
    return common.caption_record(rid, image, text, {"image_path": obj[self.image_key]})
