"""What every ingestion source shares: the skip signal, input checks and the item type.

A source turns raw input into records of docs/data_format.md. Anything wrong with one input item
raises `Skip(reason, detail)`; the shard writer counts it by reason and moves on, so one corrupt
JPEG costs one example, never the job. The checks run at ingest time, once, so that training
never meets these inputs (the streaming pipeline still skips what slips through).

Images are checked, not re-encoded: the original JPEG/PNG bytes are stored, so ingest is lossless
and cheap; `check_image` reads the header for the pixel limit *before* decoding (a decompression
bomb costs nothing) and then fully decodes to catch truncated or corrupt files.
"""

import dataclasses
import json
import os
import posixpath
from typing import Any, Iterator, Union

from mmscale.data.transforms import DEFAULT_MAX_IMAGE_PIXELS, SkipExample, opened_image

# Every reason an input item can be skipped for (keys of the skip report).
SKIP_REASONS = (
    "empty_image",      # zero-byte image file or member
    "bad_image",        # not decodable (corrupt or truncated JPEG/PNG, unknown format)
    "image_too_large",  # width x height over --max_image_pixels (decompression bomb)
    "missing_image",    # the image a caption or conversation names does not exist
    "non_utf8",         # text bytes that are not UTF-8
    "unsafe_path",      # a tar member or JSON path that is absolute or climbs out with '..'
    "bad_json",         # a JSON line or .json member that does not parse, or the wrong shape
    "missing_text",     # an image without its caption / an empty conversation
    "bad_archive",      # a truncated or unreadable tar (the rest of that tar is lost)
    "invalid_record",   # the record built from the input breaks docs/data_format.md rules
)


class Skip(Exception):
  """One input item cannot become a record; `reason` is one of SKIP_REASONS."""

  def __init__(self, reason: str, detail: str = ""):
    assert reason in SKIP_REASONS, reason
    self.reason = reason
    self.detail = detail
    super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclasses.dataclass(frozen=True)
class Skipped:
  """A skipped item as a source yields it: reason plus where (file, key or line) for the report."""
  reason: str
  where: str
  detail: str = ""


Item = Union[dict, Skipped]  # a record (docs/data_format.md) or a skipped input
ItemIterator = Iterator[Item]


@dataclasses.dataclass(frozen=True)
class IngestOptions:
  """Options every source may read (tools/ingest.py flags of the same names).

  image_root: folder that relative image paths resolve against (default: the input's folder).
  image_key / text_key: feature or JSON keys of the image and the text; '' = the source default.
  split / data_dir: tfds split and data directory.
  max_image_pixels: images with more pixels are skipped as `image_too_large`.
  """
  image_root: str = ""
  image_key: str = ""
  text_key: str = ""
  split: str = "train"
  data_dir: str = ""
  max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS


def check_image(data: bytes, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> bytes:
  """Returns `data` if it is a decodable image within the pixel limit; raises Skip otherwise.

  The same rules as training's decode (`transforms.opened_image`), with a full decode here so
  that truncated files are caught at ingestion, not in a training run.
  """
  if not data:
    raise Skip("empty_image", "zero bytes")
  try:
    with opened_image(data, max_pixels) as im:
      im.load()
  except SkipExample as e:
    raise Skip(e.reason, e.detail) from e
  return bytes(data)


def decode_text(data: Any) -> str:
  """bytes or str -> str; non-UTF-8 bytes raise Skip('non_utf8')."""
  if isinstance(data, str):
    return data
  try:
    return bytes(data).decode("utf-8")
  except UnicodeDecodeError as e:
    raise Skip("non_utf8", str(e)) from e


def check_relative_path(path: str) -> str:
  """A member or image path that must stay inside its root: no absolute path, no '..' part."""
  norm = path.replace("\\", "/")
  if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or ".." in norm.split("/"):
    raise Skip("unsafe_path", repr(path))
  return posixpath.normpath(norm)


def read_image_file(root: str, rel_path: Any, max_pixels: int) -> bytes:
  """Reads and checks an image named by a relative path under `root`."""
  if not isinstance(rel_path, str) or not rel_path:
    raise Skip("bad_json", f"image path {rel_path!r} is not a non-empty string")
  path = os.path.join(root, check_relative_path(rel_path))
  try:
    with open(path, "rb") as f:
      data = f.read()
  except FileNotFoundError as e:
    raise Skip("missing_image", path) from e
  except OSError as e:
    raise Skip("missing_image", f"{path}: {e}") from e
  return check_image(data, max_pixels)


def parse_json(data: Any, what: str) -> Any:
  """JSON text or bytes -> value; undecodable bytes are `non_utf8`, bad syntax `bad_json`."""
  try:
    return json.loads(decode_text(data))
  except ValueError as e:
    raise Skip("bad_json", f"{what}: {e}") from e


def caption_record(rid: str, image: bytes, text: str, meta: dict) -> dict:
  """A `caption` record: [image 0, text(loss)]."""
  text = text.strip()
  if not text:
    raise Skip("missing_text", "empty caption")
  return {"id": rid, "kind": "caption", "images": [image],
          "segments": [{"image": 0}, {"text": text, "loss": True}], "descriptor": None,
          "meta": meta}


def item_ranges(num_items: int, num_units: int) -> list[tuple[int, int]]:
  """Splits [0, num_items) into up to `num_units` contiguous non-empty ranges."""
  num_units = max(1, min(num_units, num_items))
  bounds = [num_items * i // num_units for i in range(num_units + 1)]
  return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def jsonl_units(paths: list[str], target: int) -> list[dict]:
  """Splits JSONL files into about `target` byte ranges {"path", "start", "stop"}.

  Byte ranges, not line counts, so planning never reads the files; `iter_lines` assigns each
  line to the range holding its first byte, so ranges cover every line exactly once.
  """
  sizes = {p: os.path.getsize(p) for p in paths}
  total = max(sum(sizes.values()), 1)
  units = []
  for p in paths:
    n = max(1, round(target * sizes[p] / total))
    bounds = [sizes[p] * i // n for i in range(n + 1)]
    units += [{"path": p, "start": a, "stop": b} for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
  return units


def iter_lines(unit: dict) -> Iterator[tuple[int, bytes]]:
  """(byte offset, raw line) for each non-blank line whose first byte lies in the unit's range."""
  with open(unit["path"], "rb") as f:
    pos = unit["start"]
    if pos > 0:
      f.seek(pos - 1)
      pos = pos - 1 + len(f.readline())  # finish the line that began before the range
    while pos < unit["stop"]:
      line = f.readline()
      if not line:
        return
      if line.strip():
        yield pos, line
      pos += len(line)
