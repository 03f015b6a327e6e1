"""Target coefficients: what a position's loss weighs each class's loss by (docs/conventions.md §4-§6).

A position's class-balanced loss is ``sum_c a_c L_c(z)`` with ``a_c = t_c w_c``: ``t`` its target distribution
(one-hot for a class index, given for soft targets, smoothed towards ``1 / C`` by label smoothing) and ``w``
the class weights. :class:`Coefficients` holds ``a`` in parts, so that neither a one-hot target nor the weights
tiled to (P, C) is ever formed:

    a_c = dense_c + label_coef * [c == label] + smooth * w_c

The engine builds it, and each loss's ``dense`` evaluation reads it through three operations: the total
``A = sum_c a_c``, the dot product ``sum_c a_c x_c`` and the difference ``g - a * x`` (computed in place of
arrays the loss hands over).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .primitives import Primitives
from .validation import ignored_labels

__all__ = ["Coefficients", "LabelWeights", "label_weights"]


class Coefficients(NamedTuple):
    """``a = dense + label_coef * onehot(labels) + smooth * weights``, each part optional (None).

    ``dense`` is (P..., C); ``labels`` integer and ``label_coef`` (P...); ``smooth`` (P...) or a scalar;
    ``weights`` the (C,) class weights that ``smooth`` multiplies (None: all ones)."""

    dense: Any = None
    labels: Any = None
    label_coef: Any = None
    smooth: Any = None
    weights: Any = None

    def total(self, ops: Primitives, num_classes: int) -> Any:
        """``A = sum_c a_c`` per position."""
        xp = ops.xp
        parts = []
        if self.dense is not None:
            parts.append(xp.sum(self.dense, axis=-1))
        if self.label_coef is not None:
            parts.append(self.label_coef)
        if self.smooth is not None:
            parts.append(self.smooth * (num_classes if self.weights is None else xp.sum(self.weights)))
        return _add(parts)

    def dot(self, ops: Primitives, x: Any) -> Any:
        """``sum_c a_c x_c`` per position, for ``x`` (P..., C)."""
        xp = ops.xp
        parts = []
        if self.dense is not None:
            parts.append(xp.sum(self.dense * x, axis=-1))
        if self.label_coef is not None:
            parts.append(self.label_coef * ops.take_label(x, self.labels))
        if self.smooth is not None:
            parts.append(self.smooth * (xp.sum(x, axis=-1) if self.weights is None else xp.matmul(x, self.weights)))
        return _add(parts)

    def subtract_from_(self, ops: Primitives, g: Any, x: Any = None) -> Any:
        """``g - a * x`` (``g - a`` when ``x`` is None), for ``g`` and ``x`` (P..., C) that the caller has just
        allocated itself and hands over: computed in place of them (rebound where arrays are immutable), with no
        further (P..., C) array where ``smooth`` is one number. The caller reads only the result, never ``g`` or
        ``x`` again (docs/conventions.md §14)."""
        x_at_label = None
        if self.label_coef is not None and x is not None:
            x_at_label = ops.take_label(x, self.labels)  # read before x is scaled below
        if self.dense is not None:
            g -= self.dense if x is None else self.dense * x
        if self.smooth is not None:
            smooth = self.smooth if isinstance(self.smooth, float) else self.smooth[..., None]
            if x is None:
                g -= smooth if self.weights is None else smooth * self.weights
            else:
                if self.weights is not None:
                    x *= self.weights
                x *= smooth
                g -= x
        if self.label_coef is not None:
            at_label = self.label_coef if x_at_label is None else self.label_coef * x_at_label
            g = ops.subtract_at_label_(g, self.labels, at_label)
        return g


class LabelWeights(NamedTuple):
    """Class indices made ready for the losses: ``labels`` with ignored positions set to class 0 (any class would
    do: their coefficients are 0), ``valid`` the mask of counted positions (None when every position counts),
    ``scale`` each position's factor (0 where ignored, its sample weight; None for all ones) and ``weight`` the
    position's weight ``w_y * scale``."""

    labels: Any
    valid: Any
    scale: Any
    weight: Any


def label_weights(
    ops: Primitives, labels: Any, weights: Any | None, ignore_index: int | None, sample_weight: Any | None, like: Any
) -> LabelWeights:
    """:class:`LabelWeights` of integer ``labels`` (P...), in the dtype and on the device of ``like``."""
    xp = ops.xp
    ignored = ignored_labels(xp, labels, ignore_index)
    valid = None if ignored is None else ~ignored
    if valid is not None:
        labels = xp.where(valid, labels, xp.zeros_like(labels))
    scale = None if valid is None else xp.astype(valid, like.dtype)
    if sample_weight is not None:
        scale = sample_weight if scale is None else scale * sample_weight
    if weights is not None:
        weight = ops.take_weights(weights, labels)
        weight = weight if scale is None else weight * scale
    else:
        weight = xp.ones_like(labels, dtype=like.dtype) if scale is None else scale
    return LabelWeights(labels, valid, scale, weight)


def _add(parts: list) -> Any:
    total = None
    for part in parts:
        total = part if total is None else total + part
    return total
