"""Sweep specs: a sweep file lists points; a point is a config spec plus overrides plus tags.

A sweep file `configs/sweeps/NAME.py` defines `get_sweep(arg=None) -> list[dict]`, each dict
`{"name": str, "config": "path.py:arg", "overrides": {"field.path": value}, "tags": {...}}`
(`overrides` and `tags` optional). Tags become results-table columns; the `key=value` pairs of the
config argument are added as tags automatically, so `point.py:size=s,arm=caption` yields columns
`size` and `arm` without repeating them.
"""

from __future__ import annotations

import dataclasses
import re

from absl import flags
from ml_collections import config_flags

from mmscale import cli_flags
from mmscale import config as config_lib
from mmscale.errors import ConfigError, UsageError

_NAME = re.compile(r"^[A-Za-z0-9_.=-]+$")


@dataclasses.dataclass(frozen=True)
class Point:
  name: str
  config: str
  overrides: tuple = ()  # ((dotted field, value), ...): hashable, ordered
  tags: tuple = ()

  @property
  def override_dict(self) -> dict:
    return dict(self.overrides)

  @property
  def tag_dict(self) -> dict:
    return dict(self.tags)

  def config_flags(self) -> list[str]:
    """`--config=...` and one `--config.x=y` per override: what both entry points accept."""
    return [f"--config={self.config}"] + [f"--config.{k}={_flag_value(v)}"
                                         for k, v in self.overrides]

  def load(self):
    """The point's ConfigDict with its overrides applied, parsed from `config_flags()` by
    ml_collections' config flag exactly as the entry points will parse them; a mistake (unknown
    field, value of the wrong type, config file error) is a `ConfigError` naming the point."""
    argv = ["sweep"] + self.config_flags()
    fv = flags.FlagValues()
    holder = config_flags.DEFINE_config_file("config", None, "", flag_values=fv, sys_argv=argv)
    try:
      cli_flags.parse_with_config_flag(fv, argv)
    except UsageError as e:
      raise ConfigError(f"sweep point '{self.name}'", str(e)) from None
    return holder.value


def _flag_value(value) -> str:
  return str(value).lower() if isinstance(value, bool) else str(value)


def config_arg_tags(config_spec: str) -> dict:
  """`path.py:a=1,b=x` -> {'a': '1', 'b': 'x'}: the coordinates of a point."""
  _, _, arg = config_spec.partition(":")
  return {k: _scalar(v) for k, v in (item.split("=", 1) for item in arg.split(",") if "=" in item)}


def _scalar(text: str):
  """'2457600' -> 2457600, '0.05' -> 0.05, 'caption' -> 'caption' (table columns sort right)."""
  for kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      pass
  return text


def make_point(entry: dict, extra_overrides: dict | None = None) -> Point:
  name = entry["name"]
  if not _NAME.match(name):
    raise ConfigError(f"sweep point '{name}'", "names may use letters, digits and _ . = - only "
                      "(they become directory names)")
  overrides = {**entry.get("overrides", {}), **(extra_overrides or {})}
  tags = {**config_arg_tags(entry["config"]), **entry.get("tags", {})}
  return Point(name=name, config=entry["config"], overrides=tuple(sorted(overrides.items())),
               tags=tuple(tags.items()))


def load_sweep(spec: str, extra_overrides: dict | None = None) -> list[Point]:
  """Loads `configs/sweeps/NAME.py[:arg]`; names must be unique (they are run directories)."""
  entries = config_lib.call_config_file(spec, "get_sweep", field="sweep")
  points = [make_point(e, extra_overrides) for e in entries]
  seen = set()
  for p in points:
    if p.name in seen:
      raise ConfigError(f"sweep point '{p.name}'", "duplicate name")
    seen.add(p.name)
  return points


def parse_overrides(items: list[str]) -> dict:
  """['data.world_dir=/w', ...] -> {'data.world_dir': '/w'} (typed later by the target field)."""
  out = {}
  for item in items or ():
    key, sep, value = item.partition("=")
    if not sep:
      raise ConfigError(f"override '{item}'", "expected field.path=value")
    out[key.removeprefix("config.")] = value
  return out


def check_point(point: Point) -> None:
  """What `--dry_run` checks of a point: its config and overrides parse as the entry points will
  parse them (`Point.load`: an unknown field or a value of the wrong type fails) and every field
  is in the schema (`mmscale.config.check_schema`). The rules that need the target's devices
  (mesh, batch) are checked by the launchers and, in seconds, by the run itself."""
  config = point.load()
  try:
    config_lib.check_schema(config)
  except ConfigError as e:
    raise ConfigError(f"sweep point '{point.name}'", str(e)) from None
