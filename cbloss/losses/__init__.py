"""The losses, one module each, registered in one table.

Each module holds its math (docstring), its value and its analytic gradient, as two functions:

- ``hard(ops, z, labels, coef, gamma, with_grad)``: ``coef * L_y`` for class indices, the hot path;
- ``dense(ops, z, a, gamma, with_grad)``: ``sum_c a_c L_c`` for any :class:`~cbloss.targets.Coefficients`
  (soft targets, label smoothing);
- for the losses that treat each class as a binary problem, ``multi_hot(ops, z, targets, class_weights,
  position_weights, gamma, with_grad, total)``: multi-hot targets (docs/conventions.md §6.5); with ``total`` the
  value is the 0-d sum over the positions.

Both return ``(value, grad)``: the per-position values and ``d value / d z`` (None without ``with_grad``).
:data:`LOSSES` is the one list of losses: the options' choices, the focal losses and the docs' table derive from
it. Adding a loss: docs/architecture.md (one module, one entry here, its definition in the test oracle).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from . import sigmoid, softmax, softmax_focal

__all__ = ["FOCAL_DEFAULT_GAMMA", "LOSSES", "LossSpec"]

FOCAL_DEFAULT_GAMMA = 2.0


class LossSpec(NamedTuple):
    hard: Callable[..., tuple[Any, Any]]
    dense: Callable[..., tuple[Any, Any]]
    #: For a focal loss, the loss it is at gamma = 0 (exactly); None for a loss that takes no gamma.
    without_focusing: str | None
    #: ``L_c(z)``, the unweighted loss of a position whose label is c: docs/conventions.md §4's table (checked).
    formula: str
    #: Multi-hot targets (several positives per position), for the per-class binary losses; None otherwise.
    multi_hot: Callable[..., tuple[Any, Any]] | None = None
    #: How the loss reads logits as probabilities: "softmax" over the classes, or "sigmoid" per class.
    activation: str = "sigmoid"


LOSSES: dict[str, LossSpec] = {
    "softmax": LossSpec(softmax.hard, softmax.dense, None, "-log p_c, p = softmax(z)", activation="softmax"),
    "sigmoid": LossSpec(
        sigmoid.hard,
        sigmoid.dense,
        None,
        "sum_i -log sigmoid(x_i)",
        sigmoid.multi_hot,
    ),
    "focal": LossSpec(
        sigmoid.hard,
        sigmoid.dense,
        "sigmoid",
        "sum_i -(1 - sigmoid(x_i))^gamma * log sigmoid(x_i)",
        sigmoid.multi_hot,
    ),
    "softmax_focal": LossSpec(
        softmax_focal.hard,
        softmax_focal.dense,
        "softmax",
        "-(1 - p_c)^gamma * log p_c, p = softmax(z)",
        activation="softmax",
    ),
}
