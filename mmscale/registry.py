"""The one name -> object registry (big_vision style) of every pluggable piece.

Models, connectors, evaluators, data sources, knowledge stages, LLM backends, launchers, claim
kinds, resize modes and remat policies are each a `Registry`; an unknown name raises
`UnknownNameError` (an `MmscaleError`) naming the kind and the known names.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from mmscale.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
  """`@registry.register("name")` on a class or function; `registry.get("name")` looks it up."""

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: dict[str, T] = {}

  def register(self, name: str) -> Callable[[T], T]:
    def wrap(obj: T) -> T:
      if name in self._entries:
        raise ValueError(f"{self.kind} {name!r} is registered twice")
      self._entries[name] = obj
      return obj
    return wrap

  def add(self, name: str, obj: T) -> T:
    """`register(name)(obj)`, for entries that are not defined with a decorator."""
    return self.register(name)(obj)

  def get(self, name: str) -> T:
    if name not in self._entries:
      raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {self.names()}")
    return self._entries[name]

  def names(self) -> list[str]:
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    return name in self._entries

  def __iter__(self) -> Iterator[str]:
    return iter(self.names())

  def __len__(self) -> int:
    return len(self._entries)
