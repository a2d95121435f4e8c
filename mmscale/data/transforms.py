"""Record -> example: decode images, tokenise segments, build the per-example masks (contracts §4).

One example is the unpacked form of one record (L = its token count, n = its image segments,
K = tokens per image, S = image size, of the run's `BatchLayout`):
```
tokens          int32[L]         BOS, then segments in order; an image segment is K x image_id
mask_ar         int32[L]         1 = causal token; an image block is 1 then K-1 zeros
                                 (bidirectional inside); text without loss right after an image
                                 (a VQA question) is 0, so it joins the image's prefix block
mask_loss       int32[L]         1 on text with loss and on the EOS that closes it
image_positions int32[n * K]     index in the example of each image token, in sequence order
images          float32[n, S, S, 3]  RGB in [-1, 1]
id, arm, kind   str              for accounting and tests; never reach the model
```
A record that cannot become an example raises `SkipExample(reason)`: one corrupt image or
undecodable text must cost one example, not the run. `SkipCountingIterDataset` turns those into
counts (part of the iterator state, so they survive a resume) and raises `DataError` when the
skipped fraction exceeds `data.max_skip_fraction`.
"""

import contextlib
import io
from typing import Any, Mapping

import grain
import msgpack
import numpy as np
from PIL import Image, ImageOps

from mmscale.data import records
from mmscale.errors import DataError, RecordFormatError
from mmscale.registry import Registry

# Reasons a record is skipped. `truncated` is not a skip (the example is kept, shortened).
SKIP_REASONS = ("corrupt_record", "bad_record", "non_utf8", "bad_image", "image_too_large", "bad_image_ref",
                "no_targets", "too_long", "too_many_images")
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096


class SkipExample(Exception):
  """This record cannot become a training example; `reason` is one of SKIP_REASONS."""

  def __init__(self, reason: str, detail: str = ""):
    self.reason = reason
    self.detail = detail
    super().__init__(f"{reason}: {detail}" if detail else reason)


def _stretch(im: Image.Image, size: int) -> np.ndarray:
  """Bilinear resize to S x S, ignoring aspect (the world's images are already square)."""
  if im.size != (size, size):
    im = im.resize((size, size), Image.BILINEAR)
  return _normalise(np.asarray(im, dtype=np.float32))


def _pad(im: Image.Image, size: int) -> np.ndarray:
  """Aspect-preserving resize of the longer side to S, centred on a 0.0 (mid-grey) canvas.

  Keeps the whole image (nothing cropped) at the cost of padded patches; 0.0 is the
  normalised mid-point, so padding carries no colour the model could read as content.
  """
  w, h = im.size
  scale = size / max(w, h)
  nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
  if (nw, nh) != (w, h):
    im = im.resize((nw, nh), Image.BILINEAR)
  out = np.zeros((size, size, 3), np.float32)
  top, left = (size - nh) // 2, (size - nw) // 2
  out[top:top + nh, left:left + nw] = _normalise(np.asarray(im, dtype=np.float32))
  return out


def _crop(im: Image.Image, size: int) -> np.ndarray:
  """Aspect-preserving resize of the shorter side to S, then the centre S x S crop."""
  w, h = im.size
  if (w, h) != (size, size):
    im = ImageOps.fit(im, (size, size), Image.BILINEAR, centering=(0.5, 0.5))
  return _normalise(np.asarray(im, dtype=np.float32))


def _normalise(arr: np.ndarray) -> np.ndarray:
  return arr * (2.0 / 255.0) - 1.0


# data.resize: how an image of any shape becomes S x S.
RESIZE_MODES = Registry("resize mode")
for _name, _fit in (("stretch", _stretch), ("pad", _pad), ("crop", _crop)):
  RESIZE_MODES.add(_name, _fit)


@contextlib.contextmanager
def opened_image(data: bytes, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
  """The PIL image of encoded bytes, for a `with` block; every failure becomes `SkipExample`.

  The pixel limit is checked from the header, before decoding, so a decompression bomb costs
  nothing; errors raised inside the caller's block (the actual decode) are mapped too. Shared by
  training (`decode_image`) and ingestion (`ingest.common.check_image`), so both judge an image
  by the same rules.
  """
  if not isinstance(data, (bytes, bytearray)) or not data:
    raise SkipExample("bad_image", "empty image bytes")
  try:
    with Image.open(io.BytesIO(data)) as im:
      w, h = im.size
      if w * h > max_pixels:
        raise SkipExample("image_too_large", f"{w}x{h} > {max_pixels} pixels")
      yield im
  except SkipExample:
    raise
  except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError, bombs).
    raise SkipExample("bad_image", f"{type(e).__name__}: {e}") from e


def decode_image(data: bytes, image_size: int,
                 max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, resize: str = "stretch") -> np.ndarray:
  """Encoded PNG/JPEG bytes -> float32[S, S, 3] in [-1, 1], resized by `RESIZE_MODES[resize]`.

  `convert("RGB")` forces the full decode, so truncated files fail here, not later.
  """
  fit = RESIZE_MODES.get(resize)
  with opened_image(data, max_pixels) as im:
    im.draft("RGB", (image_size, image_size))  # JPEG: decode at a reduced scale when possible
    return fit(to_rgb(im), image_size)


# Modes holding more than 8 bits per pixel, with the largest value of each: PIL's convert("RGB")
# clips them to 255 (a 16-bit grey PNG would come out almost white), so they are scaled first.
_WIDE_MODES = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535,
               "F": 1.0}


def to_rgb(im: Image.Image) -> Image.Image:
  """Any decoded image -> 8-bit RGB as it is meant to be seen: the first frame of an animation,
  EXIF orientation applied, 16-bit and float grey scaled (not clipped) to 8 bits, palette,
  grey+alpha, RGBA and CMYK through PIL's conversions. The one decoder of training, evaluation
  and generation (all call decode_image)."""
  if getattr(im, "is_animated", False):
    im.seek(0)
  im = ImageOps.exif_transpose(im)
  if im.mode in _WIDE_MODES:
    top = _WIDE_MODES[im.mode]
    grey = np.asarray(im, dtype=np.float64)
    if im.mode == "I" and grey.max(initial=0) <= 255:  # 8-bit values stored wide
      top = 255
    im = Image.fromarray(np.clip(np.rint(grey / top * 255), 0, 255).astype(np.uint8), "L")
  return im.convert("RGB")


def decode_record_or_skip(data: bytes) -> dict:
  """Serialized record -> dict, mapping every decode failure to a skip reason."""
  try:
    return records.decode_record(data)
  except UnicodeDecodeError as e:
    raise SkipExample("non_utf8", str(e)) from e
  except (RecordFormatError, ValueError, TypeError, KeyError, msgpack.UnpackException) as e:
    cause = e.__cause__ or e.__context__
    if isinstance(cause, UnicodeDecodeError):
      raise SkipExample("non_utf8", str(e)) from e
    raise SkipExample("bad_record", f"{type(e).__name__}: {e}") from e


class ExampleBuilder:
  """Builds one example (module docstring) from a decoded record.

  `prompt_only=True` (evaluation) drops text segments with loss and the EOS, giving the prompt
  that a model continues; it never raises `no_targets`.
  """

  def __init__(self, tokenizer, *, image_size: int, num_image_tokens: int,
               max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, resize: str = "stretch"):
    RESIZE_MODES.get(resize)  # an unknown mode fails here, naming the known ones
    self.resize = resize
    self.tokenizer = tokenizer
    self.image_size = int(image_size)
    self.num_image_tokens = int(num_image_tokens)
    self.max_image_pixels = int(max_image_pixels)
    self.bos_id = int(tokenizer.bos_id)
    self.eos_id = int(tokenizer.eos_id)
    self.image_id = int(tokenizer.image_id)

  def _encode(self, text: Any) -> list[int]:
    if isinstance(text, (bytes, bytearray)):
      try:
        text = bytes(text).decode("utf-8")
      except UnicodeDecodeError as e:
        raise SkipExample("non_utf8", str(e)) from e
    if not isinstance(text, str):
      raise SkipExample("bad_record", f"text segment of type {type(text).__name__}")
    try:
      ids = self.tokenizer.encode(text)
    except UnicodeError as e:  # lone surrogates cannot be encoded for sentencepiece
      raise SkipExample("non_utf8", str(e)) from e
    # A literal "<img>" in text must not pose as an image slot: image tokens come only from images.
    return [int(t) for t in ids if t != self.image_id]

  def __call__(self, rec: Mapping[str, Any], *, arm: str = "", prompt_only: bool = False) -> dict:
    images_bytes = rec.get("images") or []
    segments = rec.get("segments") or []
    if prompt_only:
      segments = [s for s in segments if "image" in s or not s.get("loss")]
    last_loss = max((i for i, s in enumerate(segments) if "text" in s and s.get("loss")),
                    default=-1)
    k = self.num_image_tokens
    tokens, mask_ar, mask_loss = [self.bos_id], [1], [0]
    image_positions, images, decoded = [], [], {}
    in_prefix = False  # True right after an image, until a text segment with loss
    for i, seg in enumerate(segments):
      if "image" in seg:
        idx = seg["image"]
        if not isinstance(idx, int) or not 0 <= idx < len(images_bytes):
          raise SkipExample("bad_image_ref", f"image index {idx!r} of {len(images_bytes)}")
        if idx not in decoded:
          decoded[idx] = decode_image(images_bytes[idx], self.image_size, self.max_image_pixels,
                                      self.resize)
        start = len(tokens)
        tokens += [self.image_id] * k
        mask_ar += [1] + [0] * (k - 1)
        mask_loss += [0] * k
        image_positions += range(start, start + k)
        images.append(decoded[idx])
        in_prefix = True
        continue
      ids = self._encode(seg.get("text"))
      if seg.get("loss"):
        tokens += ids
        mask_ar += [1] * len(ids)
        mask_loss += [1] * len(ids)
        in_prefix = False
      else:
        tokens += ids
        mask_ar += [0 if in_prefix else 1] * len(ids)
        mask_loss += [0] * len(ids)
      if i == last_loss:
        tokens.append(self.eos_id)
        mask_ar.append(1)
        mask_loss.append(1)
    if not prompt_only and not any(mask_loss):
      raise SkipExample("no_targets", "no text segment with loss")
    s = self.image_size
    return {
        "tokens": np.asarray(tokens, np.int32),
        "mask_ar": np.asarray(mask_ar, np.int32),
        "mask_loss": np.asarray(mask_loss, np.int32),
        "image_positions": np.asarray(image_positions, np.int32),
        "images": (np.stack(images).astype(np.float32) if images
                   else np.zeros((0, s, s, 3), np.float32)),
        "id": str(rec.get("id", "")),
        "arm": arm,
        "kind": str(rec.get("kind", "")),
    }


def builder_for(data_config, layout, tokenizer) -> "ExampleBuilder":
  """The ExampleBuilder of a run (`config.data`, its `BatchLayout`): training, evaluation and
  analysis prepare images and text exactly alike."""
  return ExampleBuilder(tokenizer, image_size=layout.image_size,
                        num_image_tokens=layout.tokens_per_image, resize=data_config.resize,
                        max_image_pixels=int(data_config.max_image_pixels))


class SkipCountingIterDataset(grain.IterDataset):
  """Drops skip markers `{"skip": reason, ...}` from the stream and counts them by reason.

  Counting here (in the main process, after any worker processes) keeps the counts exact with
  multiprocessing and puts them in the iterator state, so they resume with the data position.
  The fraction check starts after `min_records` records so that one early bad record cannot
  fail a run.
  """

  def __init__(self, parent: grain.IterDataset, *, max_skip_fraction: float,
               min_records: int = 100):
    super().__init__(parent)
    self._max_skip_fraction = float(max_skip_fraction)
    self._min_records = int(min_records)

  def __iter__(self) -> "SkipCountingIterator":
    return SkipCountingIterator(self._parent.__iter__(), self._max_skip_fraction,
                                self._min_records)


class SkipCountingIterator(grain.DatasetIterator):
  """Iterator of SkipCountingIterDataset; state = parent state + counters (JSON-safe ints)."""

  def __init__(self, parent: grain.DatasetIterator, max_skip_fraction: float, min_records: int):
    super().__init__(parent)
    self._max = max_skip_fraction
    self._min = min_records
    self._counts = self._zero_counts()

  @staticmethod
  def _zero_counts() -> dict:
    return {"records": 0, "examples": 0, "truncated": 0, "skipped": 0,
            "reasons": {r: 0 for r in SKIP_REASONS}, "arms": {}, "files": {}}

  def __next__(self) -> dict:
    while True:
      el = next(self._parent)
      c = self._counts
      c["records"] += 1
      if "skip" in el:
        c["skipped"] += 1
        c["reasons"][el["skip"]] = c["reasons"].get(el["skip"], 0) + 1
        if "file" in el:  # a damaged file: named in the log, the stats and a DataError
          c.setdefault("files", {})[el["file"]] = c.get("files", {}).get(el["file"], 0) + 1
        self._check()
        continue
      c["examples"] += 1
      c["truncated"] += int(el.pop("truncated", False))
      arm = el.get("arm", "")
      c["arms"][arm] = c["arms"].get(arm, 0) + 1
      return el

  def _check(self):
    c = self._counts
    frac = c["skipped"] / c["records"]
    if c["records"] >= self._min and frac > self._max:
      reasons = {r: n for r, n in c["reasons"].items() if n}
      files = f"; corrupt records by file: {c['files']}" if c.get("files") else ""
      raise DataError(
          f"skipped fraction {frac:.3f} ({c['skipped']} of {c['records']} records) exceeds "
          f"data.max_skip_fraction={self._max}; reasons: {reasons}{files}")

  def stats(self) -> dict:
    """Counters so far: records read, examples kept, skipped by reason, kept per arm."""
    c = self._counts
    return {"records": c["records"], "examples": c["examples"], "truncated": c["truncated"],
            "skipped": c["skipped"], "skip_reasons": dict(c["reasons"]), "arms": dict(c["arms"]),
            "corrupt_files": dict(c.get("files", {})),
            "skip_fraction": c["skipped"] / max(c["records"], 1)}

  def get_state(self) -> dict:
    c = self._counts
    return {"parent": self._parent.get_state(),
            "counts": {**c, "reasons": dict(c["reasons"]), "arms": dict(c["arms"]),
                       "files": dict(c.get("files", {}))}}

  def set_state(self, state: dict):
    self._parent.set_state(state["parent"])
    c = state["counts"]
    self._counts = {**c, "reasons": dict(c["reasons"]), "arms": dict(c["arms"]),
                    "files": dict(c.get("files", {}))}
