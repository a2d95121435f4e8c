"""Orbax checkpointing of the train state together with the grain iterator state.

Both live in one Orbax step directory (`state/` and `data/`), so a restored run continues with
exactly the batches it would have seen. Saves are asynchronous: the device keeps training while
the previous step is written; only a finished step directory is ever restored.

A saved state is only trusted once the divergence guard has checked it (the next step's metrics
are computed on it, mmscale/train/guard.py): `keep` checked checkpoints are kept, plus the newest
one while it waits for its check; `discard_from` deletes those that failed.
"""

from __future__ import annotations

import logging

import grain
import grain.checkpoint  # registers grain's Orbax handler  # pylint: disable=unused-import
import orbax.checkpoint as ocp

from mmscale import paths
from mmscale.errors import CheckpointError


class Checkpointer:
  """Thin policy layer over `ocp.CheckpointManager`: when to save, what to keep, how to resume."""

  def __init__(self, directory: str, *, save_every: int, keep: int, async_save: bool = True):
    self.directory = paths.absolute(directory)  # gs:// as it is
    self.keep = keep
    self.checked_through = -1  # states saved at steps <= this passed the guard
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=None, save_interval_steps=save_every,
            enable_async_checkpointing=async_save, create=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, data_iterator, *, force: bool = False) -> bool:
    """Saves if `step` is on the interval (or `force`); returns whether a save started."""
    args = {"state": ocp.args.StandardSave(state)}
    if data_iterator is not None:
      args["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    saved = self.manager.save(step, args=ocp.args.Composite(**args), force=force)
    if saved:
      logging.info("checkpoint: saving step %d to %s", step, self.directory)
    return saved

  def mark_checked(self, step: int) -> None:
    """The state of `step` passed the guard; the oldest checked checkpoints beyond `keep` go."""
    if step <= self.checked_through:
      return
    self.checked_through = step
    checked = [s for s in sorted(self.manager.all_steps()) if s <= step]
    for old in checked[:max(0, len(checked) - self.keep)]:
      self.manager.delete(old)

  def discard_from(self, step: int) -> int | None:
    """Deletes the checkpoints of `step` and later (states that failed the guard, once their
    saves have finished); returns the latest step kept, or None."""
    self.manager.wait_until_finished()
    for bad in [s for s in self.manager.all_steps() if s >= step]:
      logging.warning("checkpoint: deleting step %d, whose state failed the divergence check", bad)
      self.manager.delete(bad)
    return self.manager.latest_step()

  def restore(self, abstract_state, data_iterator, step: int | None = None):
    """Restores `(state, data_iterator)` at `step` (default: latest) into the given shardings."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f"no checkpoint in {self.directory}")
    if step not in self.manager.all_steps():
      raise CheckpointError(f"no checkpoint for step {step} in {self.directory}; "
                            f"available: {sorted(self.manager.all_steps())}")
    args = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
      args["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    restored = self.manager.restore(step, args=ocp.args.Composite(**args))
    logging.info("checkpoint: restored step %d from %s", step, self.directory)
    return restored["state"], restored.get("data", data_iterator) if data_iterator is not None else None

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
