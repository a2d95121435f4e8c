"""Any tfds image-text dataset (by name, split, data_dir) -> `caption` records.

Read through tfds' own random-access API, `tfds.data_source(name, split=..., data_dir=...)`, which
needs the dataset prepared in `array_record` file format (`tfds build --file_format=array_record`
or `builder.download_and_prepare(file_format="array_record")`). It never downloads
(`download=False`) and needs no builder code: tfds reads the prepared files' metadata, so a
dataset built elsewhere works as well as a registered one.

The image feature is read with `SkipDecoding`, giving the stored PNG/JPEG bytes (no decode and
re-encode); a dataset whose image is a plain uint8 tensor is encoded to PNG. Feature keys:
--image_key (default "image") and --text_key (default "caption"); nested features use '/'
("captions/text"); a list of texts keeps the first. Used both by ingestion (units = index
ranges) and by the streaming mixture (`mmscale.data.mixture`, a `tfds` source), which turns
examples into records on the fly.
"""

import io
from typing import Any, Iterator

import numpy as np
from PIL import Image

from mmscale import extras
from mmscale.data import records
from mmscale.data.ingest import common
from mmscale.data.ingest.common import Skip, Skipped


def open_data_source(name: str, split: str, data_dir: str = "", image_key: str = "image"):
  """tfds' random-access source of `name` (e.g. "coco_captions/2017:1.1.0"), images undecoded."""
  tfds = extras.require("tensorflow_datasets", f"the tfds source '{name}'")  # slow import: lazy
  decoders = {}
  node = decoders
  parts = image_key.split("/")
  for part in parts[:-1]:
    node = node.setdefault(part, {})
  node[parts[-1]] = tfds.decode.SkipDecoding()
  return tfds.data_source(name, split=split, data_dir=data_dir or None, download=False,
                          decoders=decoders)


def _lookup(example: Any, key: str) -> Any:
  for part in key.split("/"):
    if not isinstance(example, dict) or part not in example:
      return None
    example = example[part]
  return example


def _image_bytes(value: Any) -> bytes:
  if isinstance(value, (bytes, np.bytes_)):
    return bytes(value)
  arr = np.asarray(value)
  if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
    raise Skip("bad_image", f"image feature of dtype {arr.dtype} and shape {arr.shape}")
  buf = io.BytesIO()
  Image.fromarray(arr.squeeze(-1) if arr.ndim == 3 and arr.shape[-1] == 1 else arr).save(
      buf, format="PNG")
  return buf.getvalue()


def _text(value: Any) -> str:
  if isinstance(value, np.ndarray) and value.dtype == object:
    value = list(value.reshape(-1))
  if isinstance(value, (list, tuple)):
    if not value:
      raise Skip("missing_text", "empty list of texts")
    value = value[0]
  if isinstance(value, np.ndarray) and value.ndim == 0:
    value = value.item()
  if not isinstance(value, (str, bytes, np.bytes_)):
    raise Skip("missing_text", f"text feature of type {type(value).__name__}")
  return common.decode_text(bytes(value) if isinstance(value, np.bytes_) else value)


def example_to_record(example: dict, rid: str, *, image_key: str, text_key: str,
                      max_pixels: int = common.DEFAULT_MAX_IMAGE_PIXELS,
                      check: bool = True) -> dict:
  """One tfds example -> a `caption` record; raises Skip for a bad image or text.

  `check=False` (streaming) leaves the image check to the pipeline's own decode, which would
  otherwise decode every image twice.
  """
  image = _lookup(example, image_key)
  if image is None:
    raise Skip("missing_image", f"no feature {image_key!r}")
  text = _lookup(example, text_key)
  if text is None:
    raise Skip("missing_text", f"no feature {text_key!r}")
  image = _image_bytes(image)
  if check:
    image = common.check_image(image, max_pixels)
  return common.caption_record(rid, image, _text(text), {})


class TfdsSource:
  """Reads a prepared tfds dataset; see the module docstring. --input = dataset name."""

  def __init__(self, input_spec: str, options: common.IngestOptions):
    self.name = input_spec
    self.options = options
    self.image_key = options.image_key or "image"
    self.text_key = options.text_key or "caption"
    self._source = None

  def describe(self) -> str:
    return f"tfds:{self.name}:{self.options.split}"

  def _data_source(self):
    if self._source is None:
      self._source = open_data_source(self.name, self.options.split, self.options.data_dir,
                                      self.image_key)
    return self._source

  def units(self, target: int) -> list:
    return [{"start": a, "stop": b}
            for a, b in common.item_ranges(len(self._data_source()), target)]

  def read(self, unit: dict) -> Iterator[common.Item]:
    source = self._data_source()
    for i in range(unit["start"], unit["stop"]):
      rid = f"{self.name}/{self.options.split}/{i}"
      try:
        rec = example_to_record(source[i], rid, image_key=self.image_key,
                                text_key=self.text_key,
                                max_pixels=self.options.max_image_pixels)
        rec["meta"] = {"tfds_index": i}
        yield rec
      except Skip as e:
        yield Skipped(e.reason, rid, e.detail)


def record_bytes(example: dict, rid: str, image_key: str, text_key: str) -> bytes:
  """tfds example -> serialized record for the streaming pipeline (Skip propagates)."""
  return records.encode_record(example_to_record(example, rid, image_key=image_key,
                                                 text_key=text_key, check=False))
