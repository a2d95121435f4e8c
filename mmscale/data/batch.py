"""The batch layout and the one builder of batch rows (docs/contracts.md, "Batches").

Every batch the model sees, in training, evaluation, generation, tests and benchmarks, is built
here from unpacked examples (`transforms.ExampleBuilder`):
```
tokens, positions, segment_ids, mask_ar, mask_loss   int32[B, L]
images                                              float32[B, M, S, S, 3]  unused slots zero
image_positions                                     int32[B, M * K]         L in unused slots
```
L is the layout's sequence length T for training rows, or a prompt length for generation. A row
holds one or more whole examples one after another (packing); `pad="left"` puts a single prompt
at the end of its row, so every row's next token lands in the same column when decoding.
"""

from __future__ import annotations

import dataclasses

import numpy as np

INT_FIELDS = ("tokens", "positions", "segment_ids", "mask_ar", "mask_loss")


@dataclasses.dataclass(frozen=True)
class BatchLayout:
  """The shape of a batch row: T tokens, M image slots of K tokens each, S x S pixel images.

  Resolved once from the config (`mmscale.config.validate`): `data.seq_len`,
  `data.max_images_per_seq`, `model.connector.num_tokens`, `model.vit.image_size`.
  """
  seq_len: int
  max_images: int
  tokens_per_image: int
  image_size: int

  @classmethod
  def from_config(cls, config) -> "BatchLayout":
    return cls(seq_len=int(config.data.seq_len), max_images=int(config.data.max_images_per_seq),
               tokens_per_image=int(config.model.connector.num_tokens),
               image_size=int(config.model.vit.image_size))

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return (self.image_size, self.image_size, 3)


def empty_rows(layout: BatchLayout, rows: int, length: int | None = None) -> dict[str, np.ndarray]:
  """`rows` rows of padding only (zeros; image positions L): also the batch that traces init."""
  t = layout.seq_len if length is None else int(length)
  out = {name: np.zeros((rows, t), np.int32) for name in INT_FIELDS}
  out["images"] = np.zeros((rows, layout.max_images) + layout.image_shape, np.float32)
  out["image_positions"] = np.full((rows, layout.max_images * layout.tokens_per_image), t,
                                   np.int32)
  return out


def build_rows(rows: list[list[dict]], layout: BatchLayout, *, length: int | None = None,
               pad: str = "right", truncate: bool = False) -> dict[str, np.ndarray]:
  """One batch row per list of examples; the examples of a row are packed in order.

  Args:
    rows: per row, the examples it holds (dicts with `tokens`, `mask_ar`, optional `mask_loss`
      int[L_i], `images` float[n_i, S, S, 3], `image_positions` int[n_i * K]).
    length: columns L (default the layout's T); e.g. a prompt length for generation.
    pad: "right" (training, loss) or "left" (one prompt per row, for decoding).
    truncate: cut a single over-long example at L, dropping image tokens past it (held-out
      loss); otherwise an example that does not fit raises ValueError.
  Each example gets positions 0.. and its own segment id (1, 2, ...); padding has segment 0.
  """
  if pad not in ("right", "left"):
    raise ValueError(f"pad must be 'right' or 'left', got {pad!r}")
  t = layout.seq_len if length is None else int(length)
  m, k = layout.max_images, layout.tokens_per_image
  out = empty_rows(layout, len(rows), t)
  for r, examples in enumerate(rows):
    if pad == "left" and len(examples) > 1:
      raise ValueError("left padding holds one prompt per row")
    used = sum(len(ex["tokens"]) for ex in examples)
    off = t - used if pad == "left" else 0
    slot = 0
    for seg, ex in enumerate(examples, start=1):
      tokens = np.asarray(ex["tokens"])
      images = np.asarray(ex["images"])
      positions = np.asarray(ex["image_positions"])
      if truncate and len(examples) == 1:
        off = 0
        tokens = tokens[:t]
        images, positions = images[:m], positions[:m * k]
        positions = np.where(positions < t, positions, t)
      n, length_i = len(images), len(tokens)
      if off < 0 or off + length_i > t or slot + n > m:
        raise ValueError(f"example of {length_i} tokens / {n} images does not fit the row "
                         f"({max(off, 0)} of {t} tokens, {slot} of {m} images used)")
      end = off + length_i
      out["tokens"][r, off:end] = tokens
      out["positions"][r, off:end] = np.arange(length_i, dtype=np.int32)
      out["segment_ids"][r, off:end] = seg
      out["mask_ar"][r, off:end] = np.asarray(ex["mask_ar"])[:length_i]
      if "mask_loss" in ex:
        out["mask_loss"][r, off:end] = np.asarray(ex["mask_loss"])[:length_i]
      out["images"][r, slot:slot + n] = images
      shifted = np.where(positions < t, positions + off, t)
      out["image_positions"][r, slot * k:slot * k + len(positions)] = shifted
      off, slot = end, slot + n
  return out


def build_row(examples: list[dict], layout: BatchLayout) -> dict[str, np.ndarray]:
  """One right-padded row (no batch axis) packing `examples`, as the packer emits it."""
  return {name: value[0] for name, value in build_rows([examples], layout).items()}


def one_per_row(examples: list[dict], layout: BatchLayout, **kwargs) -> dict[str, np.ndarray]:
  """`build_rows` with one example per row (evaluation, generation)."""
  return build_rows([[ex] for ex in examples], layout, **kwargs)


def batches_of(items: list, rows: int):
  """Yields (chunk, n_real): chunks of exactly `rows` items, the last padded by repeating its
  first. Fixed shapes mean one compilation for a whole evaluation."""
  for start in range(0, len(items), rows):
    chunk = items[start:start + rows]
    n_real = len(chunk)
    yield chunk + [chunk[0]] * (rows - n_real), n_real
