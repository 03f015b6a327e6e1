"""The engine folds the reduction's factor into the target coefficients (docs/conventions.md §7): that must equal
reducing the per-position values and gradients afterwards, for every loss, label form and reduction, on NumPy;
and no public function may change its inputs (docs/conventions.md §14)."""

from __future__ import annotations

import numpy as np
import pytest

import cbloss
from cbloss.engine import evaluate
from cbloss.options import loss_options
from cbloss.primitives import Primitives

FORMS = ["hard", "ignore", "smooth", "ignore_smooth", "soft", "soft_smooth"]


def _inputs(form: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(6, 5)) * 3
    w = rng.uniform(0.2, 2.0, 5)
    if form.startswith("soft"):
        labels = rng.dirichlet(np.ones(5), size=6)
    else:
        labels = rng.integers(0, 5, size=6)
        if "ignore" in form:
            labels[::2] = -1
    options = {"ignore_index": -1 if "ignore" in form else None, "label_smoothing": 0.1 if "smooth" in form else 0.0}
    return z, labels, w, options


@pytest.mark.parametrize("loss", ["softmax", "sigmoid", "focal", "softmax_focal"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("reduction", ["mean", "weighted_mean", "sum"])
def test_folded_reduction_equals_reducing_afterwards(loss, form, reduction):
    z, labels, w, options = _inputs(form)
    soft = form.startswith("soft")
    ops = Primitives(cbloss._namespace.namespace_of(z))
    values, grads = evaluate(
        ops, z, labels, w, loss_options(loss=loss, reduction="none", **options), soft=soft, with_grad=True
    )
    if reduction == "sum":
        denominator = 1.0
    elif soft:
        denominator = len(z) if reduction == "mean" else float(np.sum(labels @ w))
    else:
        counted = labels != -1
        denominator = counted.sum() if reduction == "mean" else float(np.sum(w[labels[counted]]))
    loss_value, grad = evaluate(
        ops, z, labels, w, loss_options(loss=loss, reduction=reduction, **options), soft=soft, with_grad=True
    )
    np.testing.assert_allclose(loss_value, values.sum() / denominator, rtol=1e-13)
    np.testing.assert_allclose(grad, grads / denominator, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("loss", ["softmax", "sigmoid", "focal", "softmax_focal"])
@pytest.mark.parametrize("form", FORMS)
def test_public_functions_leave_their_inputs_unchanged(loss, form):
    z, labels, w, options = _inputs(form, seed=1)
    saved = [a.copy() for a in (z, labels, w)]
    cbloss.class_balanced_loss(z, labels, w, loss=loss, **options)
    cbloss.class_balanced_loss_and_grad(z, labels, w, loss=loss, reduction="none", **options)
    cbloss.ClassBalancedLoss.from_weights(w, loss=loss, **options).loss_and_grad(z, labels)
    for before, after in zip(saved, (z, labels, w), strict=True):
        np.testing.assert_array_equal(before, after)
        assert before.tobytes() == after.tobytes()
