"""Renders knowledge-world scenes to small RGB PNGs.

Each shape is drawn once per (shape, size, offset) at 4x resolution with PIL and box-downsampled
into an anti-aliased alpha mask of one cell; a scene is then a few numpy blends, so rendering
tens of thousands of scenes takes seconds. An object never leaves its cell, so with ViT patch =
cell every object is exactly one image token.
"""
import functools
import io

import numpy as np
from PIL import Image, ImageDraw

from mmscale.data.world_scenes import Scene
from mmscale.data.world_spec import BACKGROUND_RGB, COLOUR_RGB, SIZE_RADIUS, WorldSpec

_SUPER = 4


def _circle(d, cx, cy, r):
  d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)


def _square(d, cx, cy, r):
  h = 0.85 * r
  d.rectangle([cx - h, cy - h, cx + h, cy + h], fill=255)


def _triangle(d, cx, cy, r):
  d.polygon([(cx, cy - r), (cx + r, cy + 0.8 * r), (cx - r, cy + 0.8 * r)], fill=255)


def _cross(d, cx, cy, r):
  t = 0.38 * r
  d.rectangle([cx - r, cy - t, cx + r, cy + t], fill=255)
  d.rectangle([cx - t, cy - r, cx + t, cy + r], fill=255)


def _ring(d, cx, cy, r):
  d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
  q = 0.5 * r
  d.ellipse([cx - q, cy - q, cx + q, cy + q], fill=0)


def _diamond(d, cx, cy, r):
  d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=255)


SHAPE_DRAWERS = {"circle": _circle, "square": _square, "triangle": _triangle, "cross": _cross,
                 "ring": _ring, "diamond": _diamond}


@functools.lru_cache(maxsize=None)
def shape_mask(shape: str, size: str, cell: int, dx: int = 0, dy: int = 0) -> np.ndarray:
  """float32[cell, cell] alpha in [0, 1] of `shape` centred at (cell/2 + dx, cell/2 + dy)."""
  s = cell * _SUPER
  canvas = Image.new("L", (s, s), 0)
  r = SIZE_RADIUS[size] * s
  SHAPE_DRAWERS[shape](ImageDraw.Draw(canvas), s / 2 + dx * _SUPER, s / 2 + dy * _SUPER, r)
  a = np.asarray(canvas, np.float32).reshape(cell, _SUPER, cell, _SUPER).mean(axis=(1, 3))
  return a / 255.0


def _stripes(cell: int) -> np.ndarray:
  """float32[cell, 1] shade: alternate 2-px bands at full and 55% brightness."""
  return np.where((np.arange(cell) // 2) % 2 == 0, 1.0, 0.55).astype(np.float32)[:, None]


def render_scene(scene: Scene, spec: WorldSpec, rng: np.random.Generator) -> np.ndarray:
  """uint8[H, W, 3] image of the scene; `rng` draws colour jitter and small-object offsets."""
  c = spec.cell
  img = np.empty((spec.image_size, spec.image_size, 3), np.float32)
  img[:] = BACKGROUND_RGB
  for o in scene.objects:
    slack = 0 if SIZE_RADIUS[o.size] > 0.4 else spec.position_jitter
    dx, dy = (int(v) for v in rng.integers(-slack, slack + 1, size=2))
    alpha = shape_mask(o.shape, o.size, c, dx, dy)[..., None]
    jitter = rng.integers(-spec.colour_jitter, spec.colour_jitter + 1, size=3)
    colour = np.clip(np.asarray(COLOUR_RGB[o.colour], np.float32) + jitter, 0, 255)
    fill = colour[None, None, :] * (_stripes(c)[..., None] if o.texture == "striped" else 1.0)
    region = img[o.row * c:(o.row + 1) * c, o.col * c:(o.col + 1) * c]
    region[:] = region * (1.0 - alpha) + fill * alpha
  return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def encode_png(image: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="PNG")
  return buf.getvalue()


def decode_image(data: bytes) -> np.ndarray:
  """uint8[H, W, 3] from PNG/JPEG bytes."""
  return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
