"""First-fit packing of variable-length examples into rows of the batch layout.

A row holds whole examples (from `transforms.ExampleBuilder`) one after another, built by
`mmscale.data.batch.build_row`. Why our own packer rather than grain's
`FirstFitPackIterDataset`: that one packs every feature
along its first axis, but here images live on a separate axis (M slots, capped per row) and
`image_positions` must be shifted by each example's offset in its row.

Resume follows grain's packer: examples are packed in groups of `num_rows` open rows; the state
is the parent state at the start of the group being emitted plus the number of rows already
emitted from it. Restoring re-reads and re-packs that group (packing is deterministic) and skips
the emitted rows, so a restored iterator yields exactly the rows an uninterrupted one would.
"""

import numpy as np

import grain

from mmscale.data.batch import BatchLayout, build_row


def fit_example(ex: dict, seq_len: int, max_images: int,
                num_image_tokens: int) -> tuple[dict | None, str | None]:
  """Makes `ex` fit one row: returns (ex, None), (shortened ex, "truncated") or (None, reason).

  Truncation cuts at `seq_len` or before the first image past `max_images`, never inside an
  image block (a partial block would feed the model part of an image), and only if a training
  target remains; otherwise the example is dropped with reason "too_long" / "too_many_images".
  """
  k = num_image_tokens
  length = len(ex["tokens"])
  n = len(ex["images"])
  if length <= seq_len and n <= max_images:
    return ex, None
  starts = ex["image_positions"][::k] if k else np.zeros((0,), np.int32)
  cut = min(length, seq_len)
  if n > max_images:
    cut = min(cut, int(starts[max_images]))
  for s in starts:  # pull the cut back to the start of a block it would split
    if s < cut < s + k:
      cut = int(s)
  if not ex["mask_loss"][:cut].any():
    return None, ("too_many_images" if n > max_images and length <= seq_len else "too_long")
  keep = int(np.sum(starts + k <= cut))
  out = dict(ex)
  for name in ("tokens", "mask_ar", "mask_loss"):
    out[name] = ex[name][:cut]
  out["images"] = ex["images"][:keep]
  out["image_positions"] = ex["image_positions"][:keep * k]
  return out, "truncated"


class PackIterDataset(grain.IterDataset):
  """Packs examples into rows (module docstring); `max_examples_per_row=1` only pads.

  Args:
    parent: examples that already fit a row (`fit_example`).
    layout: T, M, K, S of the rows.
    num_rows: open rows per packing group; more rows pack tighter, cost more memory and a
      longer replay on resume. The batch size is a good choice.
    max_examples_per_row: None (no limit) or 1 for pack=False.
  """

  def __init__(self, parent: grain.IterDataset, *, layout: BatchLayout, num_rows: int,
               max_examples_per_row: int | None = None):
    super().__init__(parent)
    self._layout = layout
    self._num_rows = int(num_rows)
    self._max_per_row = max_examples_per_row

  def __iter__(self) -> "PackIterator":
    return PackIterator(self._parent.__iter__(), self._layout, self._num_rows, self._max_per_row)


class PackIterator(grain.DatasetIterator):
  """Iterator of PackIterDataset; see the module docstring for the state."""

  def __init__(self, parent: grain.DatasetIterator, layout: BatchLayout, num_rows: int,
               max_per_row: int | None):
    super().__init__(parent)
    self._layout = layout
    self._num_rows = num_rows
    self._max_per_row = max_per_row
    self._group_state = self._parent.get_state()
    self._counts = {"rows": 0, "examples": 0, "tokens": 0, "images": 0}
    self._reset_group()

  def _reset_group(self):
    self._bins = None       # list of [examples, tokens used, images used] once packed
    self._emitted = 0       # rows of the current group already returned
    self._carry = None      # (example, parent state before it): first example of next group
    self._next_state = None

  def _fits(self, b: list, ex: dict) -> bool:
    t, m = self._layout.seq_len, self._layout.max_images
    return (b[1] + len(ex["tokens"]) <= t and b[2] + len(ex["images"]) <= m
            and (self._max_per_row is None or len(b[0]) < self._max_per_row))

  def _pack_group(self):
    """Reads examples into up to num_rows rows, first fit, until one fits in none of them."""
    bins = []
    while True:
      if self._carry is not None:
        ex, before = self._carry
        self._carry = None
      else:
        before = self._parent.get_state()
        try:
          ex = next(self._parent)
        except StopIteration:
          if not bins:
            raise
          self._next_state = self._parent.get_state()
          break
      target = next((b for b in bins if self._fits(b, ex)), None)
      if target is None and len(bins) < self._num_rows:
        target = [[], 0, 0]
        bins.append(target)
        if not self._fits(target, ex):
          raise ValueError(f"example {ex.get('id')!r} does not fit an empty row; "
                           "pass it through fit_example first")
      if target is None:
        self._carry = (ex, before)
        self._next_state = before
        break
      target[0].append(ex)
      target[1] += len(ex["tokens"])
      target[2] += len(ex["images"])
    self._bins = bins

  def __next__(self) -> dict:
    if self._bins is None:
      self._pack_group()
    examples, used, n_images = self._bins[self._emitted]
    self._emitted += 1
    row = build_row(examples, self._layout)
    st = self._counts
    st["rows"] += 1
    st["examples"] += len(examples)
    st["tokens"] += used
    st["images"] += n_images
    if self._emitted == len(self._bins):
      carry, self._group_state = self._carry, self._next_state
      self._reset_group()
      self._carry = carry
    return row

  def stats(self) -> dict:
    """Rows emitted, examples and tokens in them; efficiency = non-pad tokens / (rows * T)."""
    st = dict(self._counts)
    st["efficiency"] = st["tokens"] / max(st["rows"] * self._layout.seq_len, 1)
    st["examples_per_row"] = st["examples"] / max(st["rows"], 1)
    return st

  def get_state(self) -> dict:
    return {"parent": self._group_state, "emitted": self._emitted, "stats": dict(self._counts)}

  def set_state(self, state: dict):
    self._parent.set_state(state["parent"])
    self._group_state = state["parent"]
    self._reset_group()
    self._emitted = int(state["emitted"])
    self._counts = dict(state["stats"])
