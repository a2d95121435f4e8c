"""LLaVA conversation JSON + an image folder -> `vqa` records (multi-turn).

Input: a JSON file holding a list of conversations (LLaVA-Instruct / LLaVA-1.5 mix layout), or
a JSONL file with one conversation per line; images resolve against --image_root (default: the
JSON file's folder):
```
[{"id": "000000033471", "image": "coco/train2017/000000033471.jpg",
  "conversations": [{"from": "human", "value": "<image>\nWhat colour is the bus?"},
                    {"from": "gpt", "value": "The bus is white and red."},
                    {"from": "human", "value": "What feature can be seen on the back?"},
                    {"from": "gpt", "value": "An advertisement."}]}, ...]
```
Record: `[image 0, q1(no loss), a1(loss), q2(no loss), a2(loss), ...]`; every turn of a
multi-turn conversation is kept in order, human turns as prompt (no loss), model turns as
targets. The `<image>` marker is removed from the text: the image segment comes first, where
LLaVA puts it. A conversation without "image" becomes a `text` record with the same segments.
Units are contiguous ranges of conversations, so one big JSON spreads over all workers.
"""

import json
import os
from typing import Any, Iterator

from mmscale.data.ingest import common
from mmscale.errors import RecordFormatError
from mmscale.data.ingest.common import Skip, Skipped

HUMAN = ("human", "user")
MODEL = ("gpt", "assistant", "model")
IMAGE_MARKER = "<image>"


def load_items(path: str) -> list:
  """The conversations of a .json list or a .jsonl file (JSONL lines stay raw bytes, parsed per
  item, so one bad line is one skip)."""
  with open(path, "rb") as f:
    data = f.read()
  if path.endswith(".jsonl"):
    return [line for line in data.splitlines() if line.strip()]
  try:
    items = json.loads(data)
  except ValueError as e:
    raise RecordFormatError(f"{path}: not a JSON file ({e}); a file of one JSON object per "
                            "line should end in .jsonl") from e
  if not isinstance(items, list):
    raise RecordFormatError(f"{path}: expected a JSON list of conversations, got "
                            f"{type(items).__name__}")
  return items


def conversation_segments(turns: Any) -> list[dict]:
  """LLaVA turns -> text segments: human = prompt (loss False), model = target (loss True)."""
  if not isinstance(turns, list) or not turns:
    raise Skip("missing_text", "no conversations")
  segments = []
  for turn in turns:
    if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
      raise Skip("bad_json", f"turn {turn!r:.80} lacks a string 'value'")
    who = str(turn.get("from", "")).lower()
    if who not in HUMAN + MODEL:
      raise Skip("bad_json", f"unknown speaker {who!r}")
    text = turn["value"].replace(IMAGE_MARKER, " ").strip()
    if text:
      segments.append({"text": text, "loss": who in MODEL})
  if not any(s["loss"] for s in segments):
    raise Skip("missing_text", "no model turn to learn from")
  return segments


class LlavaSource:
  """Reads a LLaVA conversation file; see the module docstring."""

  def __init__(self, input_spec: str, options: common.IngestOptions):
    self.path = input_spec
    if not os.path.isfile(self.path):
      raise FileNotFoundError(f"--input: no LLaVA JSON file {self.path!r}")
    self.root = options.image_root or os.path.dirname(os.path.abspath(self.path))
    self.options = options
    self.image_key = options.image_key or "image"
    self._items = None

  def describe(self) -> str:
    return "llava:" + os.path.basename(self.path)

  def _all(self) -> list:
    if self._items is None:
      self._items = load_items(self.path)
    return self._items

  def units(self, target: int) -> list:
    return [{"start": a, "stop": b} for a, b in common.item_ranges(len(self._all()), target)]

  def _record(self, index: int, item: Any) -> dict:
    if isinstance(item, bytes):  # a JSONL line
      item = common.parse_json(item, f"line {index + 1}")
    if not isinstance(item, dict):
      raise Skip("bad_json", f"item {index} is not an object")
    segments = conversation_segments(item.get("conversations"))
    rid = str(item.get("id", index))
    meta = {"source_index": index}
    image_path = item.get(self.image_key)
    if image_path is None:
      return {"id": rid, "kind": "text", "images": [], "segments": segments,
              "descriptor": None, "meta": meta}
    image = common.read_image_file(self.root, image_path, self.options.max_image_pixels)
    meta["image_path"] = image_path
    return {"id": rid, "kind": "vqa", "images": [image], "segments": [{"image": 0}] + segments,
            "descriptor": None, "meta": meta}

  def read(self, unit: dict) -> Iterator[common.Item]:
    items = self._all()
    for i in range(unit["start"], unit["stop"]):
      try:
        yield self._record(i, items[i])
      except Skip as e:
        yield Skipped(e.reason, f"{self.path}[{i}]", e.detail)
