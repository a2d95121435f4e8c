"""Record -> example: masks per segment kind, image decoding, skip reasons and skip accounting."""

import io

import grain
import msgpack
import numpy as np
import pytest
from PIL import Image

from mmscale.data import records, transforms
from mmscale.errors import DataError

K, S = 3, 8
BOS, EOS, IMG = 1, 2, 3


class WordTokenizer:
  """Whitespace word tokenizer with the contract's special ids; enough for the transform."""
  bos_id, eos_id, image_id, pad_id = BOS, EOS, IMG, 0

  def __init__(self):
    self.vocab = {"<img>": IMG}

  def encode(self, text: str) -> list[int]:
    return [self.vocab.setdefault(w, len(self.vocab) + 4) for w in text.split()]


def png(color=(255, 0, 0), size=(S, S), fmt="PNG") -> bytes:
  buf = io.BytesIO()
  Image.new("RGB", size, color).save(buf, format=fmt)
  return buf.getvalue()


def builder(**kw):
  return transforms.ExampleBuilder(WordTokenizer(), image_size=S, num_image_tokens=K, **kw)


def record(segments, images=(), kind="caption"):
  return {"id": "r", "kind": kind, "images": list(images), "segments": segments, "meta": {}}


def test_caption_layout():
  ex = builder()(record([{"image": 0}, {"text": "a red cube", "loss": True}], [png()]))
  np.testing.assert_array_equal(ex["tokens"][:1 + K], [BOS] + [IMG] * K)
  assert ex["tokens"][-1] == EOS and len(ex["tokens"]) == 1 + K + 3 + 1
  np.testing.assert_array_equal(ex["mask_ar"], [1, 1, 0, 0, 1, 1, 1, 1])
  np.testing.assert_array_equal(ex["mask_loss"], [0, 0, 0, 0, 1, 1, 1, 1])
  np.testing.assert_array_equal(ex["image_positions"], [1, 2, 3])
  assert ex["images"].shape == (1, S, S, 3) and ex["images"].dtype == np.float32
  np.testing.assert_allclose(ex["images"][0, 0, 0], [1.0, -1.0, -1.0])  # red in [-1, 1]


def test_vqa_question_joins_the_image_prefix():
  ex = builder()(record([{"image": 0}, {"text": "what colour", "loss": False},
                         {"text": "red", "loss": True}], [png()], kind="vqa"))
  # BOS, image block, question (prefix, no loss), answer, EOS
  np.testing.assert_array_equal(ex["mask_ar"], [1, 1, 0, 0, 0, 0, 1, 1])
  np.testing.assert_array_equal(ex["mask_loss"], [0, 0, 0, 0, 0, 0, 1, 1])


def test_interleaved_eos_after_last_loss_text_only():
  ex = builder()(record([{"image": 0}, {"text": "one", "loss": True}, {"image": 1},
                         {"text": "two", "loss": True}], [png(), png((0, 0, 255))],
                        kind="interleaved"))
  assert list(ex["tokens"]).count(EOS) == 1 and ex["tokens"][-1] == EOS
  np.testing.assert_array_equal(ex["image_positions"], [1, 2, 3, 5, 6, 7])
  assert ex["mask_ar"][5] == 1 and (ex["mask_ar"][6:8] == 0).all()
  np.testing.assert_allclose(ex["images"][1, 0, 0], [-1.0, -1.0, 1.0])


def test_text_only_and_resize():
  ex = builder()(record([{"text": "facts here", "loss": True}], kind="text"))
  assert ex["images"].shape == (0, S, S, 3) and ex["image_positions"].shape == (0,)
  ex = builder()(record([{"image": 0}, {"text": "x", "loss": True}], [png(size=(20, 11))]))
  assert ex["images"].shape == (1, S, S, 3)
  assert ex["images"].min() >= -1.0 and ex["images"].max() <= 1.0


def test_prompt_only_drops_answer_and_eos():
  ex = builder()(record([{"image": 0}, {"text": "what colour", "loss": False},
                         {"text": "red", "loss": True}], [png()], kind="vqa"), prompt_only=True)
  assert len(ex["tokens"]) == 1 + K + 2 and EOS not in ex["tokens"]


def test_literal_img_text_is_not_an_image_slot():
  ex = builder()(record([{"text": "see <img> here", "loss": True}], kind="text"))
  assert IMG not in ex["tokens"]


@pytest.mark.parametrize("data,reason", [
    (b"", "bad_image"),
    (png(fmt="JPEG")[:40], "bad_image"),          # truncated JPEG
    (b"not an image at all", "bad_image"),
])
def test_bad_images_raise_skip(data, reason):
  with pytest.raises(transforms.SkipExample) as e:
    builder()(record([{"image": 0}, {"text": "x", "loss": True}], [data]))
  assert e.value.reason == reason


def test_pixel_limit():
  with pytest.raises(transforms.SkipExample) as e:
    builder(max_image_pixels=100)(record([{"image": 0}, {"text": "x", "loss": True}],
                                         [png(size=(20, 20))]))
  assert e.value.reason == "image_too_large"


def test_no_targets_is_skipped():
  with pytest.raises(transforms.SkipExample) as e:
    builder()(record([{"image": 0}, {"text": "q", "loss": False}], [png()]))
  assert e.value.reason == "no_targets"


def test_decode_reasons():
  good = records.encode_record(record([{"text": "ok", "loss": True}], kind="text"))
  assert transforms.decode_record_or_skip(good)["id"] == "r"
  # A str field with invalid UTF-8 (msgpack raw type without the bin type flag).
  bad_utf8 = msgpack.packb({"id": "r", "kind": "text", "images": [],
                            "segments": [{"text": b"\xff\xfe bad", "loss": True}]},
                           use_bin_type=False)
  for data, reason in [(bad_utf8, "non_utf8"), (b"\x00garbage", "bad_record"),
                       (msgpack.packb({"id": 1}), "bad_record")]:
    with pytest.raises(transforms.SkipExample) as e:
      transforms.decode_record_or_skip(data)
    assert e.value.reason == reason


def _counted(elements, **kw):
  ds = grain.MapDataset.source(elements).to_iter_dataset()
  return iter(transforms.SkipCountingIterDataset(ds, **kw))


def test_skip_counting_and_resume_of_counters():
  elements = [{"skip": "bad_image", "arm": "a"} if i % 4 == 0 else {"x": i, "arm": "a"}
              for i in range(20)]
  it = _counted(elements, max_skip_fraction=0.5, min_records=10)
  out = [next(it) for _ in range(5)]
  assert [e["x"] for e in out] == [1, 2, 3, 5, 6]
  state = it.get_state()
  rest = list(it)
  st = it.stats()
  assert st["skipped"] == 5 and st["skip_reasons"]["bad_image"] == 5 and st["records"] == 20
  fresh = _counted(elements, max_skip_fraction=0.5, min_records=10)
  fresh.set_state(state)
  assert [e["x"] for e in fresh] == [e["x"] for e in rest]
  assert fresh.stats() == st


def test_skip_fraction_over_limit_raises_data_error():
  elements = [{"skip": "non_utf8", "arm": "a"} if i % 2 else {"x": i} for i in range(50)]
  it = _counted(elements, max_skip_fraction=0.1, min_records=10)
  with pytest.raises(DataError, match=r"skipped fraction 0\.\d+ .*max_skip_fraction=0\.1"):
    list(it)


def _encoded(im, fmt="PNG", **save):
  buf = io.BytesIO()
  im.save(buf, format=fmt, **save)
  return buf.getvalue()


def test_every_image_mode_decodes_as_it_is_seen():
  """16-bit grey, palette, CMYK, EXIF-rotated and animated inputs: one decoder, right pixels."""
  size = 16
  decode = lambda data: (transforms.decode_image(data, size) + 1) * 127.5  # back to 0..255
  ramp = np.tile(np.linspace(0, 65535, size), (size, 1)).astype(np.uint16)  # 16-bit grey ramp
  grey16 = decode(_encoded(Image.fromarray(ramp)))
  np.testing.assert_allclose(grey16[..., 0], ramp / 257.0, atol=1.5)  # scaled, not clipped
  assert abs(grey16.mean() - 127.5) < 2  # (clipping made this ~250: almost white)
  red = Image.new("RGB", (size, size), (200, 10, 10))
  for im in (red.convert("P"), red.convert("CMYK")):
    np.testing.assert_allclose(decode(_encoded(im, "TIFF" if im.mode == "CMYK" else "PNG"))
                               .mean((0, 1)), (200, 10, 10), atol=4)
  half = np.zeros((size, size, 3), np.uint8)
  half[:, : size // 2] = 255  # white left half
  exif = Image.Exif()
  exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
  rotated = decode(_encoded(Image.fromarray(half), "JPEG", exif=exif.tobytes(), quality=95))
  assert rotated[: size // 2].mean() > 200 and rotated[size // 2:].mean() < 50  # white on top
  frames = [Image.new("RGB", (size, size), c) for c in ((250, 0, 0), (0, 0, 250))]
  animated = _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
  np.testing.assert_allclose(decode(animated).mean((0, 1)), (250, 0, 0), atol=6)  # first frame
