"""Argument checks shared by the core and every adapter.

Every check raises ``ValueError``/``TypeError`` whose message starts with the argument's name, so that a user
sees which argument is wrong. Checks that need array *values* (labels in range, soft targets summing to one)
are eager: callers skip them when tracing under ``jax.jit``/``tf.function`` (see ``validate=``).
"""

from __future__ import annotations

import math
from typing import Any

LOSSES = ("softmax", "sigmoid", "focal", "softmax_focal")
FOCAL_LOSSES = ("focal", "softmax_focal")
REDUCTIONS = ("none", "sum", "mean", "weighted_mean")
NORMALIZATIONS = ("classes", "samples", None)
ZERO_COUNTS = ("error", "zero")
DEFAULT_GAMMA = 2.0


def check_choice(name: str, value: Any, choices: tuple) -> Any:
    if value not in choices:
        raise ValueError(f"{name}: must be one of {list(choices)}, got {value!r}")
    return value


def check_real(name: str, value: Any, low: float, high: float) -> float:
    """A Python real in [low, high]; NaN and bools are rejected."""
    if isinstance(value, bool) or (not isinstance(value, (int, float)) and not hasattr(value, "__float__")):
        raise TypeError(f"{name}: must be a real number, got {type(value).__name__}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: must be a real number (a scalar), got {value!r}") from None
    if math.isnan(value) or not low <= value <= high:
        raise ValueError(f"{name}: must be in [{low}, {high}], got {value!r}")
    return value


def check_beta(beta: Any) -> float:
    return check_real("beta", beta, 0.0, 1.0)


def check_gamma(gamma: float | None, loss: str) -> float:
    """gamma applies to the focal losses; for the others only gamma = 0 (or None) is accepted."""
    if gamma is None:
        return DEFAULT_GAMMA if loss in FOCAL_LOSSES else 0.0
    gamma = check_real("gamma", gamma, 0.0, math.inf)
    if loss not in FOCAL_LOSSES and gamma != 0.0:
        raise ValueError(
            f"gamma: only the focal losses {list(FOCAL_LOSSES)} take gamma; got gamma={gamma} with loss={loss!r}"
        )
    return gamma


def check_label_smoothing(eps: Any) -> float:
    return check_real("label_smoothing", eps, 0.0, 1.0)


def check_ignore_index(ignore_index: Any) -> int | None:
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        try:
            as_int = int(ignore_index)
        except (TypeError, ValueError):
            as_int = None
        if as_int is None or as_int != ignore_index or isinstance(ignore_index, bool):
            raise TypeError(f"ignore_index: must be an integer or None, got {ignore_index!r}")
        ignore_index = as_int
    return ignore_index
