"""Packing: row layout, truncation, first-fit with an image cap, and exact resume (no files)."""

import json

import grain
import numpy as np
import pytest

from mmscale.data import packing
from mmscale.data.batch import BatchLayout, build_row, one_per_row

T, M, K, S = 16, 2, 3, 4
LAYOUT = BatchLayout(seq_len=T, max_images=M, tokens_per_image=K, image_size=S)


def make_example(length: int, num_images: int = 0, tag: int = 5, loss_from: int = 1) -> dict:
  """An example of `length` tokens whose first images sit right after BOS (tokens 9)."""
  tokens = np.full((length,), tag, np.int32)
  tokens[0] = 1
  positions = np.arange(1, 1 + num_images * K, dtype=np.int32)
  tokens[positions] = 9
  mask_loss = np.zeros((length,), np.int32)
  mask_loss[max(loss_from, 1 + num_images * K):] = 1
  return {"tokens": tokens, "mask_ar": np.ones((length,), np.int32), "mask_loss": mask_loss,
          "image_positions": positions,
          "images": np.full((num_images, S, S, 3), 0.5, np.float32), "id": f"ex{tag}-{length}"}


def test_build_row_layout():
  a, b = make_example(5, 1, tag=5), make_example(4, 0, tag=6)
  row = build_row([a, b], LAYOUT)
  assert {k: v.dtype for k, v in row.items()} == {
      "tokens": np.int32, "positions": np.int32, "segment_ids": np.int32, "mask_ar": np.int32,
      "mask_loss": np.int32, "images": np.float32, "image_positions": np.int32}
  assert row["images"].shape == (M, S, S, 3) and row["image_positions"].shape == (M * K,)
  np.testing.assert_array_equal(row["segment_ids"], [1] * 5 + [2] * 4 + [0] * 7)
  np.testing.assert_array_equal(row["positions"][:9], [0, 1, 2, 3, 4, 0, 1, 2, 3])
  np.testing.assert_array_equal(row["tokens"][9:], 0)
  np.testing.assert_array_equal(row["image_positions"], [1, 2, 3, T, T, T])
  assert (row["tokens"][row["image_positions"][:K]] == 9).all()
  np.testing.assert_array_equal(row["images"][1], 0.0)


def test_image_positions_shift_by_row_offset():
  row = build_row([make_example(5, 1), make_example(6, 1)], LAYOUT)
  np.testing.assert_array_equal(row["image_positions"], [1, 2, 3, 6, 7, 8])
  assert (row["tokens"][row["image_positions"]] == 9).all()


def test_left_padded_prompts_end_in_the_last_column():
  a, b = make_example(5, 1, tag=5), make_example(8, 2, tag=6)
  batch = one_per_row([a, b], LAYOUT, length=10, pad="left")
  np.testing.assert_array_equal(batch["segment_ids"][0], [0] * 5 + [1] * 5)
  np.testing.assert_array_equal(batch["positions"][0], [0] * 5 + list(range(5)))
  np.testing.assert_array_equal(batch["tokens"][1, 2:], b["tokens"])
  np.testing.assert_array_equal(batch["image_positions"], [[6, 7, 8, 10, 10, 10],
                                                           [3, 4, 5, 6, 7, 8]])
  assert (batch["tokens"][0][batch["image_positions"][0][:K]] == 9).all()
  with pytest.raises(ValueError, match="does not fit"):
    one_per_row([make_example(11)], LAYOUT, length=10, pad="left")


def test_truncated_rows_drop_image_tokens_past_the_end():
  ex = make_example(20, 1)
  ex["image_positions"] = np.arange(14, 17, dtype=np.int32)
  batch = one_per_row([ex], LAYOUT, truncate=True)
  np.testing.assert_array_equal(batch["tokens"][0], ex["tokens"][:T])
  np.testing.assert_array_equal(batch["image_positions"][0], [14, 15, T, T, T, T])
  with pytest.raises(ValueError, match="does not fit"):
    one_per_row([ex], LAYOUT)


def test_fit_example_truncates_without_splitting_images():
  ex, note = packing.fit_example(make_example(20), T, M, K)
  assert note == "truncated" and len(ex["tokens"]) == T
  # Three images, cap two: the cut falls before the third block and all text follows the
  # images, so nothing trainable is left and the example is dropped.
  ex, note = packing.fit_example(make_example(12, 3), T, M, K)
  assert ex is None and note == "too_many_images"
  ex, note = packing.fit_example(make_example(20, 0, loss_from=18), T, M, K)
  assert ex is None and note == "too_long"  # every target lies past the cut
  fits = make_example(10, 1)
  assert packing.fit_example(fits, T, M, K) == (fits, None)


def test_fit_example_cut_inside_image_block_moves_back():
  ex = make_example(20, 0)
  ex["tokens"][14:17] = 9
  ex["image_positions"] = np.arange(14, 17, dtype=np.int32)
  ex["images"] = np.zeros((1, S, S, 3), np.float32)
  out, note = packing.fit_example(ex, T, M, K)
  assert note == "truncated" and len(out["tokens"]) == 14 and len(out["images"]) == 0


def _pack(examples, num_rows=2, max_per_row=None):
  ds = grain.MapDataset.source(examples).to_iter_dataset()
  return packing.PackIterDataset(ds, layout=LAYOUT, num_rows=num_rows,
                                 max_examples_per_row=max_per_row)


def test_first_fit_packs_several_examples_per_row_and_caps_images():
  examples = [make_example(4, 0, tag=i) for i in range(6)] + [
      make_example(4, 1, tag=10 + i) for i in range(3)]
  it = iter(_pack(examples, num_rows=2))
  rows = list(it)
  assert max(r["segment_ids"].max() for r in rows) >= 3  # several examples in one row
  for r in rows:
    assert (r["image_positions"] < T).sum() <= M * K
  used = sum(int((r["segment_ids"] > 0).sum()) for r in rows)
  assert used == sum(len(e["tokens"]) for e in examples)  # nothing lost
  stats = it.stats()
  assert stats["examples"] == len(examples) and 0 < stats["efficiency"] <= 1


def test_pad_mode_one_example_per_row():
  rows = list(_pack([make_example(4, 0, tag=i) for i in range(5)], max_per_row=1))
  assert len(rows) == 5 and all(r["segment_ids"].max() == 1 for r in rows)


def test_resume_mid_group_yields_the_same_rows():
  rng = np.random.default_rng(0)
  examples = [make_example(int(rng.integers(5, 12)), int(rng.integers(0, 2)), tag=i)
              for i in range(60)]
  full = list(_pack(examples, num_rows=3))
  for cut in (1, 2, 5, 7):
    it = iter(_pack(examples, num_rows=3))
    for _ in range(cut):
      next(it)
    state = json.loads(json.dumps(it.get_state()))  # state must be JSON-safe
    fresh = iter(_pack(examples, num_rows=3))
    fresh.set_state(state)
    rest = list(fresh)
    assert len(rest) == len(full) - cut
    for a, b in zip(rest, full[cut:]):
      for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert fresh.stats()["rows"] == len(full)


def test_empty_row_overflow_is_an_error():
  with pytest.raises(ValueError, match="does not fit an empty row"):
    list(_pack([make_example(T + 1)]))
