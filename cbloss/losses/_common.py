"""Pieces that more than one loss module uses."""

from __future__ import annotations

from typing import Any


def power(xp: Any, q: Any, gamma: float) -> Any:
    """``q ** gamma``: ``q`` for gamma = 1 and one multiplication for gamma = 2 (cheaper than a general pow)."""
    if gamma == 1.0:
        return q
    return q * q if gamma == 2.0 else xp.pow(q, gamma)


def power_(q: Any, gamma: float) -> Any:
    """:func:`power` in place of ``q``, an array the caller allocated and hands over (rebound where arrays are
    immutable): the same operations, so the same numbers."""
    if gamma == 2.0:
        q *= q
    elif gamma != 1.0:
        q **= gamma
    return q
