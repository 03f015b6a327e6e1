"""Class-balanced weights ``w_i = 1 / E(n_i, beta) = (1 - beta) / (1 - beta**n_i)`` and class counts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import numpy as np

from ._checks import NORMALIZATIONS, ZERO_COUNTS, check_beta, check_choice
from ._namespace import is_array, namespace_of, to_numpy
from .effective_number import effective_number

__all__ = ["class_balanced_weights", "count_samples_per_class", "host_class_weights"]

Normalize = Literal["classes", "samples"] | None


def _counts_as_float64(samples_per_class: Any) -> np.ndarray:
    counts = to_numpy(samples_per_class) if is_array(samples_per_class) else samples_per_class
    try:
        counts = np.asarray(counts, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"samples_per_class: must be real numbers, got {samples_per_class!r}") from None
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"samples_per_class: must be a non-empty 1-D sequence, got shape {counts.shape}")
    bad = ~np.isfinite(counts) | (counts < 0)
    if bad.any():
        raise ValueError(
            f"samples_per_class: counts must be finite and >= 0; classes {np.flatnonzero(bad).tolist()} "
            f"have {counts[bad].tolist()}"
        )
    return counts


def class_balanced_weights(
    samples_per_class: Any,
    beta: float,
    *,
    normalize: Normalize = "classes",
    zero_count: Literal["error", "zero"] = "error",
) -> np.ndarray:
    """Per-class weights ``w_i = (1 - beta) / (1 - beta**n_i)``, computed in float64 on the host.

    ``normalize``:
      - ``"classes"`` (the paper's, default): rescaled so that ``sum_i w_i = C``.
      - ``"samples"``: rescaled so that the mean weight over the training set is 1,
        ``sum_i n_i w_i = sum_i n_i`` (keeps the loss scale of unweighted training).
      - ``None``: the raw ``w_i``.

    ``beta = 0`` gives equal weights; ``beta = 1`` gives inverse-frequency weights ``1 / n_i``.
    A class with count 0 raises, naming it, unless ``zero_count="zero"``: such a class gets weight 0 and the
    normalisation runs over the classes that have samples (``"classes"`` then sums to their number).
    Returns a float64 NumPy array of length ``C``.
    """
    beta = check_beta(beta)
    check_choice("normalize", normalize, NORMALIZATIONS)
    check_choice("zero_count", zero_count, ZERO_COUNTS)
    counts = _counts_as_float64(samples_per_class)
    present = counts > 0
    if not present.all():
        if zero_count == "error":
            raise ValueError(
                f"samples_per_class: classes {np.flatnonzero(~present).tolist()} have 0 samples, so their "
                "weight 1/E(0) is infinite; pass zero_count='zero' to give them weight 0"
            )
        if not present.any():
            raise ValueError("samples_per_class: every class has 0 samples")
    weights = np.zeros_like(counts)
    weights[present] = 1.0 / effective_number(counts[present], beta)
    if normalize == "classes":
        weights *= present.sum() / weights.sum()
    elif normalize == "samples":
        weights *= counts.sum() / (counts * weights).sum()
    return weights


def host_class_weights(weights: Any, num_classes: int | None = None) -> np.ndarray:
    """Given class weights as a float64 NumPy (C,) array, checked: 1-D (of length ``num_classes`` when given),
    finite and >= 0. Accepts arrays of any supported namespace, lists and tuples."""
    try:
        host = np.asarray(to_numpy(weights) if is_array(weights) else weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"weights: must be real numbers, got {weights!r}") from None
    if host.ndim != 1 or (num_classes is not None and host.shape != (num_classes,)):
        expected = "a 1-D sequence" if num_classes is None else f"{num_classes} class weights"
        raise ValueError(f"weights: expected {expected}, got shape {host.shape}")
    if not (np.isfinite(host).all() and (host >= 0).all()):
        raise ValueError(f"weights: must be finite and >= 0, got {host.tolist()}")
    return host


def _count_batch(labels: Any, num_classes: int) -> np.ndarray:
    if is_array(labels):
        xp = namespace_of(labels)
        if not xp.isdtype(labels.dtype, "integral"):
            raise TypeError(f"labels: must be integer class indices, got dtype {labels.dtype}")
    labels = np.asarray(to_numpy(labels) if is_array(labels) else labels)
    if labels.size and labels.dtype.kind not in "iu":
        raise TypeError(f"labels: must be integer class indices, got dtype {labels.dtype}")
    labels = labels.astype(np.int64, copy=False).ravel()
    out_of_range = (labels < 0) | (labels >= num_classes)
    if out_of_range.any():
        raise ValueError(f"labels: must be in [0, {num_classes}), got {np.unique(labels[out_of_range]).tolist()[:8]}")
    return np.bincount(labels, minlength=num_classes)


def count_samples_per_class(labels: Any, num_classes: int) -> np.ndarray:
    """Number of samples of each class, as an int64 NumPy array of length ``num_classes``.

    ``labels`` is an array of integer class indices of any supported namespace (any shape), or an iterable of
    such label batches, for example ``(y for _, y in loader)`` over a PyTorch DataLoader or a ``tf.data``
    pipeline. Labels outside ``[0, num_classes)`` raise.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes: must be a positive integer, got {num_classes!r}")
    if is_array(labels) or (isinstance(labels, (list, tuple)) and all(np.ndim(x) == 0 for x in labels)):
        return _count_batch(labels, int(num_classes))
    if not isinstance(labels, Iterable):
        raise TypeError(f"labels: must be an array or an iterable of label batches, got {type(labels)}")
    total = np.zeros(int(num_classes), dtype=np.int64)
    for batch in labels:
        total += _count_batch(batch, int(num_classes))
    return total
