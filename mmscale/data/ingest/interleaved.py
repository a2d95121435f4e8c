"""OBELICS-style interleaved documents (JSONL) -> `interleaved` records.

Input: JSONL files (comma-separated paths or globs), one document per line, in OBELICS layout:
two aligned lists where each position holds either a text or an image path (the other is null);
image paths resolve against --image_root (default: the JSONL file's folder):
```
{"id": "doc-1", "texts": ["A walk in the park.", null, "Then the lake."],
                "images": [null, "imgs/park.jpg", null]}
```
Record: segments in document order, every text with loss; a document with no image becomes a
`text` record. A document with any bad image (missing, corrupt, too large) is skipped whole, so
the text never refers to an image that is not there.
"""

import os
from typing import Any

from mmscale.data.ingest import common
from mmscale.data.ingest.common import Skip
from mmscale.data.ingest.jsonl_lines import JsonLinesSource


class InterleavedSource(JsonLinesSource):
  """Reads OBELICS-style JSONL; see the module docstring."""

  name = "interleaved"
  default_image_key = "images"
  default_text_key = "texts"

  def record(self, path: str, offset: int, doc: Any, image_root: str) -> dict:
    if not isinstance(doc, dict):
      raise Skip("bad_json", "document is not an object")
    texts, paths = doc.get(self.text_key), doc.get(self.image_key)
    if not isinstance(texts, list) or not isinstance(paths, list) or len(texts) != len(paths):
      raise Skip("bad_json", f"'{self.text_key}' and '{self.image_key}' must be lists of equal "
                 "length")
    images, segments = [], []
    for text, image in zip(texts, paths):
      if image is not None:
        images.append(common.read_image_file(image_root, image, self.options.max_image_pixels))
        segments.append({"image": len(images) - 1})
      elif text is not None:
        text = common.decode_text(text).strip() if isinstance(text, (str, bytes)) else None
        if text is None:
          raise Skip("bad_json", "a text entry is not a string")
        if text:
          segments.append({"text": text, "loss": True})
    if not any("text" in s for s in segments):
      raise Skip("missing_text", "document without text")
    rid = str(doc.get("id", f"{os.path.basename(path)}@{offset}"))
    return {"id": rid, "kind": "interleaved" if images else "text", "images": images,
            "segments": segments, "descriptor": None,
            "meta": {"source_file": os.path.basename(path), "source_offset": offset}}
