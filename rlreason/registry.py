"""A tiny name -> object registry, one per variant axis (DESIGN.md).

Registering a name twice raises; asking for an unknown name raises a KeyError
that lists the known names, so a config typo is a one-line fix. An entry may
declare traits when it registers (`register("kimi", pairs_with=("dr_grpo",))`);
the rest of the program reads them with `traits(name)` instead of testing names.

>>> ADD = Registry("example")
>>> @ADD.register("double")
... def double(x):
...     return 2 * x
>>> ADD.get("double")(3)
6
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownName(KeyError):
    """An unknown registry name; its message lists the known ones."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, axis: str):
        self.axis = axis
        self._items: Dict[str, T] = {}
        self._traits: Dict[str, Dict[str, Any]] = {}

    def register(self, name: str, **traits: Any) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.axis} '{name}' is already registered")
            self._items[name] = obj
            self._traits[name] = dict(traits)
            return obj

        return add

    def unregister(self, name: str) -> None:
        """Remove an entry (for a test that registers a throw-away one)."""
        self.get(name)
        del self._items[name], self._traits[name]

    def traits(self, name: str) -> Dict[str, Any]:
        """The traits `name` declared when it registered ({} for none)."""
        self.get(name)
        return dict(self._traits[name])

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise UnknownName(f"unknown {self.axis} '{name}'; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def doc(self, name: str) -> str:
        """The first paragraph of the entry's docstring on one line (whole sentences), for `rlreason list`."""
        text = (getattr(self.get(name), "__doc__", None) or "").strip()
        return " ".join(text.split("\n\n")[0].split())
