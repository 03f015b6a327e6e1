"""The one way cbloss's value objects are immutable: options, schedules and the JAX loss."""

from __future__ import annotations

from typing import Any

__all__ = ["Immutable"]


class Immutable:
    """Fields set once, while the object is built (:meth:`_set`); setting or deleting one afterwards is an
    ``AttributeError``, so that what the object hands out always follows from what it was built with (and a hash
    taken of it stays true). Copies and pickles are unaffected."""

    __slots__ = ()
    _instead = ""  # what to do instead, appended to the error for setting a field

    def _set(self, **fields: Any) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; cannot set {name!r}{self._instead}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; cannot delete {name!r}")
