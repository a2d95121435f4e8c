"""webdataset tars in img2dataset layout -> `caption` records.

Input: one or more tar paths or globs, comma separated. Members are grouped by key, the member
path up to the first '.' of its base name (webdataset's rule), so `00000/000000012.jpg`,
`00000/000000012.txt` and `00000/000000012.json` form one sample:
```
<key>.jpg | .jpeg | .png | .webp   the image (required)
<key>.txt                          the caption (preferred)
<key>.json                         img2dataset metadata; its "caption" (or --text_key) is used
                                   when there is no .txt; url/key/width/height go to meta
```
One tar is one unit of work: a tar streams front to back and cannot be split without reading it.
The tar is read as a stream (`r|*`), never extracted, so member paths are only names; an
absolute or '..' member path is still skipped (`unsafe_path`) since it marks a hostile archive.
"""

import glob
import os
import tarfile
from typing import Iterator

from mmscale.data.ingest import common
from mmscale.data.ingest.common import Skip, Skipped

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


def expand_inputs(spec: str) -> list[str]:
  """'a.tar,dir/*.tar' -> sorted existing paths; a pattern that matches nothing is an error."""
  paths = []
  for part in (p.strip() for p in spec.split(",") if p.strip()):
    found = sorted(glob.glob(part)) if any(c in part for c in "*?[") else [part]
    found = [p for p in found if os.path.isfile(p)]
    if not found:
      raise FileNotFoundError(f"--input: no file matches {part!r}")
    paths += found
  return paths


def _split_key(name: str) -> tuple[str, str]:
  """'dir/000012.jpg' -> ('dir/000012', 'jpg'); webdataset splits at the first dot of the base."""
  head, base = os.path.split(name)
  stem, dot, ext = base.partition(".")
  return (os.path.join(head, stem) if head else stem), ext.lower() if dot else ""


class WebDatasetSource:
  """Reads img2dataset tars; see the module docstring."""

  def __init__(self, input_spec: str, options: common.IngestOptions):
    self.paths = expand_inputs(input_spec)
    self.options = options
    self.text_key = options.text_key or "caption"

  def describe(self) -> str:
    return "webdataset:" + ",".join(os.path.basename(p) for p in self.paths)

  def units(self, target: int) -> list:
    del target  # a tar is the smallest unit
    return [{"path": p} for p in self.paths]

  def _sample(self, tar_name: str, key: str, members: dict) -> dict:
    image_ext = next((e for e in IMAGE_EXTS if e in members), None)
    if image_ext is None:
      raise Skip("missing_image", f"no image member for key {key!r}")
    image = common.check_image(members[image_ext], self.options.max_image_pixels)
    info = common.parse_json(members["json"], f"{key}.json") if "json" in members else {}
    if not isinstance(info, dict):
      raise Skip("bad_json", f"{key}.json is not an object")
    if "txt" in members:
      text = common.decode_text(members["txt"])
    elif isinstance(info.get(self.text_key), str):
      text = info[self.text_key]
    else:
      raise Skip("missing_text", f"no .txt and no {self.text_key!r} in .json for key {key!r}")
    meta = {"source_shard": tar_name, "key": key}
    for name in ("url", "key", "width", "height", "original_width", "original_height"):
      if isinstance(info.get(name), (str, int, float)):
        meta["wds_" + name] = info[name]
    return common.caption_record(f"{tar_name}/{key}", image, text, meta)

  def read(self, unit: dict) -> Iterator[common.Item]:
    path = unit["path"]
    tar_name = os.path.basename(path)
    key, members = None, {}

    def flush():
      try:
        return self._sample(tar_name, key, members)
      except Skip as e:
        return Skipped(e.reason, f"{path}:{key}", e.detail)

    try:
      with tarfile.open(path, "r|*") as tar:
        for info in tar:
          if not info.isfile():
            continue
          try:
            name = common.check_relative_path(info.name)
          except Skip as e:
            yield Skipped(e.reason, f"{path}:{info.name}", e.detail)
            continue
          k, ext = _split_key(name)
          if k != key:
            if key is not None and members:
              yield flush()
            key, members = k, {}
          members[ext] = tar.extractfile(info).read()
    except (tarfile.TarError, OSError, EOFError) as e:
      yield Skipped("bad_archive", path, f"{type(e).__name__}: {e}")
      return  # a truncated tar's last sample may be partial: drop it
    if key is not None and members:
      yield flush()
