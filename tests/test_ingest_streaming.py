"""Streaming additions for ingested data: resize modes (stretch / pad / crop) and the logged
realised mixture and packing efficiency."""

import io
import logging

import numpy as np
import pytest
from PIL import Image

from mmscale.data import pipeline, records, transforms
from mmscale.data.batch import BatchLayout
from mmscale.testing import data_config
from mmscale.errors import ConfigError


def png(arr: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(arr).save(buf, format="PNG")
  return buf.getvalue()


RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def test_pad_keeps_aspect_on_a_mid_grey_canvas():
  wide = np.zeros((10, 20, 3), np.uint8)
  wide[:] = RED
  out = transforms.decode_image(png(wide), 8, resize="pad")
  assert out.shape == (8, 8, 3)
  np.testing.assert_allclose(out[:2], 0.0)   # 20x10 -> 8x4, centred: 2 rows of padding each side
  np.testing.assert_allclose(out[-2:], 0.0)
  np.testing.assert_allclose(out[2:6], np.broadcast_to([1.0, -1.0, -1.0], (4, 8, 3)), atol=1e-6)


def test_crop_takes_the_centre():
  wide = np.zeros((10, 30, 3), np.uint8)
  wide[:, :10], wide[:, 10:20], wide[:, 20:] = GREEN, RED, BLUE
  out = transforms.decode_image(png(wide), 10, resize="crop")
  np.testing.assert_allclose(out, np.broadcast_to([1.0, -1.0, -1.0], (10, 10, 3)), atol=1e-6)


def test_stretch_is_the_default_and_fills_the_square():
  wide = np.zeros((10, 20, 3), np.uint8)
  wide[:] = BLUE
  np.testing.assert_allclose(transforms.decode_image(png(wide), 8),
                             np.broadcast_to([-1.0, -1.0, 1.0], (8, 8, 3)), atol=1e-6)


class WordTok:
  pad_id, bos_id, eos_id, image_id, vocab_size = 0, 2, 3, 4, 32

  def encode(self, text):
    return [5 + len(w) % 20 for w in text.split()]


def config(root, **kw):
  cfg = dict(world_dir=str(root), mixture={"caption": 1.0, "text": 3.0}, seq_len=40,
             max_images_per_seq=2, pack=True, batch_size=4, shuffle_seed=0,
             max_skip_fraction=0.0, log_every_batches=2)
  cfg.update(kw)
  return data_config(**cfg)


MODEL = BatchLayout(seq_len=40, max_images=2, tokens_per_image=4, image_size=8)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  root = tmp_path_factory.mktemp("w")
  img = png(np.full((6, 12, 3), 200, np.uint8))
  records.write_records(str(root / "arms" / "caption"), [
      {"id": f"c{i}", "kind": "caption", "images": [img],
       "segments": [{"image": 0}, {"text": "a wide grey thing " * (1 + i % 3), "loss": True}]}
      for i in range(12)], source="t")
  records.write_records(str(root / "arms" / "text"), [
      {"id": f"t{i}", "kind": "text", "images": [],
       "segments": [{"text": "words only " * (1 + i % 4), "loss": True}]} for i in range(12)],
      source="t")
  return root


def test_realised_mixture_and_packing_efficiency_are_logged(world, caplog):
  it = pipeline.make_train_iterator(config(world, resize="pad"), MODEL, WordTok(),
                                    process_index=0, process_count=1, seed=0)
  with caplog.at_level(logging.INFO):
    for _ in range(4):
      next(it)
  lines = [r.getMessage() for r in caplog.records if "realised mixture" in r.getMessage()]
  assert len(lines) == 2
  assert "caption" in lines[-1] and "(target 0.750)" in lines[-1]
  assert "packing efficiency" in lines[-1]
  stats = pipeline.pipeline_stats(it)
  assert 0 < stats["packing"]["efficiency"] <= 1
  # logging does not change the checkpointed state
  quiet = pipeline.make_train_iterator(config(world, log_every_batches=0, resize="pad"), MODEL,
                                       WordTok(), process_index=0, process_count=1, seed=0)
  for _ in range(4):
    next(quiet)
  assert quiet.get_state() == it.get_state()


def test_unknown_resize_mode_is_a_config_error(world):
  from mmscale.config import base_config  # pylint: disable=import-outside-toplevel
  from mmscale.errors import UnknownNameError  # pylint: disable=import-outside-toplevel
  from mmscale.spec import validate  # pylint: disable=import-outside-toplevel
  c = base_config()
  c.data.resize = "squash"
  with pytest.raises(ConfigError, match="data.resize.*'squash'.*crop"):
    validate(c, 8)
  with pytest.raises(UnknownNameError, match="resize mode 'squash'.*crop"):
    pipeline.make_train_iterator(config(world, resize="squash"), MODEL, WordTok(),
                                 process_index=0, process_count=1, seed=0)
