"""What a restart may change: resuming a workdir with a config that differs from the saved one.

`W/config.json` is the config of the run's latest start. On a restart with checkpoints:
  * a changed model field that shapes the parameters (every `model.*` but the numerics-only
    ones in `SHAPE_FREE`) is refused, naming the fields: the checkpoint cannot hold those
    parameters (restoring would fail deep inside Orbax, or worse, succeed on a different model);
  * a changed data field (every `data.*` but the throughput and logging knobs in `DATA_FREE`:
    mixture, batch size, sequence length, sources, ...) is refused unless
    `train.restart_data=True`, which restores the train state and starts the new data order from
    its beginning (the saved iterator position belongs to another stream);
  * anything else (steps, learning rate, logging, evaluation) may change.
Each start whose config differs keeps the previous one as `W/config_history/until_step_<N>.json`.
"""

from __future__ import annotations

import json
import logging

from etils import epath

from mmscale.errors import CheckpointError

SHAPE_FREE = ("model.dtype", "model.decoder.z_loss", "model.decoder.dropout_rate",
              "model.decoder.remat_policy")
DATA_FREE = ("data.log_every_batches", "data.read_threads", "data.num_workers",
             "data.max_skip_fraction", "data.skip_check_min_records", "data.max_image_pixels")


def _flat(tree: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict) and f"{prefix}{key}" not in ("data.mixture", "data.sources"):
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def _as_plain(config) -> dict:
  return json.loads(config.to_json_best_effort())


def changed_fields(saved: dict, config) -> dict[str, tuple]:
  """{field: (saved value, new value)} of every leaf that differs (a missing one counts)."""
  old, new = _flat(saved), _flat(_as_plain(config))
  return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
          if old.get(k) != new.get(k)}


def _describe(changes: dict) -> str:
  return "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in
                   ((k, *v) for k, v in changes.items()))


def check_resume(workdir: str, config) -> bool:
  """Checks a restart of `workdir` with `config`, before anything is built; returns whether the
  data order restarts (`train.restart_data` and a changed data field). Raises `CheckpointError`.
  A workdir without checkpoints (or without config.json) starts afresh with any config."""
  path = epath.Path(workdir) / "config.json"
  checkpoints = epath.Path(workdir) / "checkpoints"
  if not path.exists() or not checkpoints.exists() or not any(
      p.name.isdigit() for p in checkpoints.iterdir()):
    return False
  changes = changed_fields(json.loads(path.read_text()), config)
  shapes = {k: v for k, v in changes.items() if k.startswith("model.") and k not in SHAPE_FREE}
  if shapes:
    raise CheckpointError(
        f"{workdir} holds checkpoints of another model ({_describe(shapes)}); their parameters "
        "cannot be restored into this one: use a new workdir, or the saved values")
  data = {k: v for k, v in changes.items() if k.startswith("data.") and k not in DATA_FREE}
  if data and not config.train.restart_data:
    raise CheckpointError(
        f"{workdir} was trained on other data ({_describe(data)}); its saved data position "
        "belongs to that stream. Rerun with --config.train.restart_data=true to keep the train "
        "state and start the new data from its beginning, or use the saved values")
  if data:
    logging.warning("resume: data config changed (%s); the data order restarts "
                    "(train.restart_data)", _describe(data))
  elif changes:
    logging.info("resume: config changed (%s)", _describe(changes))
  return bool(data)


def restore_error(workdir: str, config, error: Exception) -> CheckpointError:
  """A restore that failed inside Orbax, as one line naming the fields that changed."""
  path = epath.Path(workdir) / "config.json"
  changes = changed_fields(json.loads(path.read_text()), config) if path.exists() else {}
  named = {k: v for k, v in changes.items() if k.startswith(("model.", "optim."))}
  reason = (f"the config changed ({_describe(named)})" if named else
            f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
  return CheckpointError(f"cannot restore the checkpoint in {workdir}: {reason}")


def write_config(workdir: str, config, start_step: int) -> None:
  """Writes `W/config.json`; a different previous one moves to config_history/ first."""
  path = epath.Path(workdir) / "config.json"
  text = config.to_json_best_effort(indent=2)
  if path.exists():
    old = path.read_text()
    if json.loads(old) == json.loads(text):
      return
    history = epath.Path(workdir) / "config_history"
    history.mkdir(parents=True, exist_ok=True)
    (history / f"until_step_{start_step}.json").write_text(old)
  path.write_text(text)

