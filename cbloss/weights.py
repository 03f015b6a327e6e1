"""Class-balanced weights ``w_i = 1 / E(n_i, beta) = (1 - beta) / (1 - beta**n_i)`` and class counts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from ._namespace import is_array, namespace_of, to_numpy
from .effective_number import effective_number
from .options import weight_options, with_options_doc
from .validation import check_beta

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .options import WeightKwargs

__all__ = ["class_balanced_weights", "count_samples_per_class"]


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


@with_options_doc
def class_balanced_weights(samples_per_class: Any, beta: float, **options: Unpack[WeightKwargs]) -> np.ndarray:
    """Per-class weights ``w_i = 1 / E_{n_i} = (1 - beta) / (1 - beta**n_i)``, in float64 on the host
    (docs/conventions.md §2-§3).

    ``beta = 0`` gives equal weights; ``beta = 1`` gives inverse-frequency weights ``1 / n_i``. With
    ``normalize="classes"`` the weights sum to ``C``; with ``"samples"`` the mean weight over the training set is 1
    (``sum_i n_i w_i = sum_i n_i``). A class with count 0 raises, naming it, unless ``zero_count="zero"``: it then
    gets weight 0 and the normalisation runs over the classes that have samples.

    Args:
        samples_per_class: the (C,) counts ``n_i`` (any array or sequence; finite, >= 0).
        beta: in [0, 1]; ``beta = (N - 1) / N`` for a feature-space volume ``N``.
        **options: the weight options below.

    Options:
    {weight_options}

    Returns:
        A float64 NumPy array of length ``C``.

    Example:
        >>> import cbloss
        >>> cbloss.class_balanced_weights([100, 10, 1], beta=0.9).round(4).tolist()
        [0.2393, 0.3674, 2.3932]
    """
    beta = check_beta(beta)
    chosen = weight_options(**options)
    normalize, zero_count = chosen["normalize"], chosen["zero_count"]
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
