"""Checks of the core's host reads that every framework's test directory runs on its own arrays (each CI session
installs one framework; tests/<framework>/ calls these with its conversions)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import cbloss
from tests import oracle


def check_validate_labels(
    convert: Callable[[np.ndarray], Any], to_bfloat16: Callable[[np.ndarray], Any], trace: Callable | None = None
) -> None:
    """``cbloss.validate_labels`` reads concrete arrays of the framework by value with the core's rules (bfloat16
    soft targets too, to their dtype's tolerance, 1e-2); traced ones (run inside ``trace``, a function
    transformation) have no values: a TypeError naming labels, never a check that passes because nothing was
    read."""
    with pytest.raises(ValueError, match=r"^labels: soft targets must sum to 1"):
        cbloss.validate_labels(to_bfloat16(np.array([[0.5, 0.875]])), 2)
    with pytest.raises(ValueError, match=r"^labels: soft targets must be finite probabilities >= 0"):
        cbloss.validate_labels(to_bfloat16(np.array([[-0.5, 1.5]])), 2)
    cbloss.validate_labels(to_bfloat16(np.array([[0.5, 0.5078125]])), 2)  # off by 0.008: within bfloat16's 1e-2
    cbloss.validate_labels(convert(np.array([0, 2, -100])), 3, ignore_index=-100)
    cbloss.validate_labels(convert(np.array([0.0, 2.0, -100.0])), 3, ignore_index=-100, soft=False)
    with pytest.raises(ValueError, match=r"^labels: class indices must be integers, got \[0.5\]"):
        cbloss.validate_labels(convert(np.array([0.0, 0.5])), 3, soft=False)
    with pytest.raises(TypeError, match=r"^labels: must be integer class indices or floating soft targets, got bool"):
        cbloss.validate_labels(convert(np.array([True, False])), 3)
    with pytest.raises(ValueError, match=r"^labels: soft targets must have 3 entries along axis -1, got shape"):
        cbloss.validate_labels(convert(np.array([[0.5, 0.5]])), 3)
    with pytest.raises(ValueError, match=r"^labels: class indices must be in \[0, 3\), got \[3, 7\]"):
        cbloss.validate_labels(convert(np.array([[0, 3], [7, 1]])), 3)
    with pytest.raises(ValueError, match=r"^labels: soft targets must sum to 1"):
        cbloss.validate_labels(convert(np.array([[0.5, 0.6, 0.0]], np.float32)), 3)
    with pytest.raises(ValueError, match=r"^labels: multi-hot targets must be in \[0, 1\]"):
        cbloss.validate_labels(convert(np.array([[0.0, 2.0, 1.0]], np.float32)), 3, multi_label=True)
    if trace is not None:

        def traced(labels: Any) -> Any:
            cbloss.validate_labels(labels, 3)
            return labels

        with pytest.raises(TypeError, match=r"^labels: validate_labels reads label values"):
            trace(traced)(convert(np.array([0, 1])))


def check_count_multi_hot_bfloat16(to_bfloat16: Callable[[np.ndarray], Any]) -> None:
    """bfloat16 multi-hot targets (the dtype of a mixed-precision pipeline) are 0/1 like any other: counted, from
    one array and from batches, neither rejected as non-binary nor failing the host transfer."""
    targets = np.random.default_rng(6).uniform(size=(5, 4)) < 0.4
    batch = to_bfloat16(targets)
    want = targets.sum(axis=0)
    np.testing.assert_array_equal(cbloss.count_samples_per_class(batch, 4, multi_label=True), want)
    np.testing.assert_array_equal(cbloss.count_samples_per_class([batch, batch], 4, multi_label=True), 2 * want)


def check_weights_beyond_float32(loss: Callable[[Any, Any, Any], Any], convert: Callable[[np.ndarray], Any]) -> None:
    """Class weights finite as given but beyond float32's range, as a list or a float64 array of the framework:
    a float32 loss (``loss(logits, labels, weights)``, summed) refuses them naming weights, since its cast would
    make them inf; a float64 loss holds them and gives their value."""
    labels, big = convert(np.array([0, 1])), [1.0, 1e39, 1.0]
    for weights in (big, convert(np.asarray(big))):
        with pytest.raises(ValueError, match=r"^weights: must be at most 3.402823e\+38 \(float32's largest"):
            loss(convert(np.zeros((2, 3), np.float32)), labels, weights)
        value = float(np.asarray(loss(convert(np.zeros((2, 3))), labels, weights)))
        assert value == pytest.approx((1.0 + 1e39) * math.log(3.0), rel=1e-12)


def check_integer_and_bool_multi_hot(loss_and_grad: Callable[..., tuple[Any, Any]], dtypes: list) -> None:
    """Multi-hot targets given as integers or bools give the oracle's loss and gradient of the same 0/1 floats
    (docs/conventions.md §6.5), for both weightings and both losses. ``loss_and_grad(logits, targets, weights,
    dtype, **options)`` runs the framework's loss on its own arrays (targets in ``dtype``) and returns NumPy
    ``(value, grad)``."""
    logits = np.random.default_rng(5).normal(size=(3, 4)) * 2
    targets = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]])  # a position without positives too
    weights = np.array([0.5, 1.0, 2.0, 4.0])
    for dtype in dtypes:
        for loss in ("sigmoid", "focal"):
            for multi_label in ("class", "sample"):
                options = dict(loss=loss, multi_label=multi_label)
                want = oracle.loss_and_grad(logits, targets.astype(float), weights, **options)
                value, grad = loss_and_grad(logits, targets, weights, dtype, **options)
                np.testing.assert_allclose(value, want.value, rtol=1e-12, err_msg=f"{dtype} {options}")
                np.testing.assert_allclose(grad, want.grad, rtol=1e-9, atol=1e-15, err_msg=f"{dtype} {options}")
