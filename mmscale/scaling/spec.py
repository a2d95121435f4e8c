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

from mmscale import config as config_lib
from mmscale.config import load_config
from mmscale.errors import ConfigError

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
    """The point's ConfigDict with its overrides applied (as the entry points will see it)."""
    return apply_overrides(load_config(self.config), self.override_dict)


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


def _coerce(old, value):
  """A string from the command line typed like the field it replaces (as config_flags does)."""
  if not isinstance(value, str) or isinstance(old, str) or old is None:
    return value
  if isinstance(old, bool):
    return value.lower() in ("1", "true", "yes")
  return type(old)(value)


def apply_overrides(config, overrides: dict):
  for dotted, value in overrides.items():
    *parents, leaf = dotted.split(".")
    node = config
    for key in parents:
      node = node[key]
    if leaf not in node:
      raise ConfigError(dotted, "unknown field (not in mmscale.config.base_config())")
    node[leaf] = _coerce(node[leaf], value)
  return config
