"""A name -> object registry (big_vision style): connectors, models, evaluators register here."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
  """A name that nothing registered; the message lists the known names."""

  def __str__(self) -> str:
    return str(self.args[0])


class Registry(Generic[T]):
  """`@registry.register("name")` on a class or function; `registry.get("name")` looks it up."""

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: dict[str, T] = {}

  def register(self, name: str) -> Callable[[T], T]:
    def wrap(obj: T) -> T:
      self._entries[name] = obj
      return obj
    return wrap

  def get(self, name: str) -> T:
    if name not in self._entries:
      raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {self.names()}")
    return self._entries[name]

  def names(self) -> list[str]:
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    return name in self._entries
