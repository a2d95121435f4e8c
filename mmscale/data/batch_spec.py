"""The shapes of a batch (docs/contracts.md §4) derived from a config, for tracing and specs."""

from __future__ import annotations

import numpy as np


def example_batch(config, rows: int) -> dict[str, np.ndarray]:
  """A zero batch with the shapes of docs/contracts.md §4, used to trace init and shardings."""
  t, m = config.data.seq_len, config.data.max_images_per_seq
  k, size = config.model.connector.num_tokens, config.model.vit.image_size
  ints = lambda *shape: np.zeros(shape, np.int32)
  return {
      "tokens": ints(rows, t), "positions": ints(rows, t), "segment_ids": np.ones((rows, t), np.int32),
      "mask_ar": np.ones((rows, t), np.int32), "mask_loss": ints(rows, t),
      "images": np.zeros((rows, m, size, size, 3), np.float32),
      "image_positions": np.full((rows, m * k), t, np.int32),
  }
