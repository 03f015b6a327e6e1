"""Per-position sample weights (docs/conventions.md §7): each position's loss times its sample weight; "mean"
divides by the counted positions, "weighted_mean" by the sum of sample weight times class weight. The reference is
the oracle's per-position losses and gradients, reduced here by that definition."""

from __future__ import annotations

import numpy as np
import pytest

import cbloss
from tests import oracle

LOSSES = [("softmax", None), ("sigmoid", None), ("focal", 2.0), ("softmax_focal", 0.5)]
FORMS = ["hard", "ignore", "smooth", "soft"]


def _case(form: str):
    rng = np.random.default_rng(11)
    logits = rng.normal(size=(2, 3, 4)) * 2
    weights = rng.uniform(0.25, 3.0, 4)
    sample_weight = rng.uniform(0.0, 2.0, (2, 3))
    sample_weight[0, 0] = 0.0
    if form == "soft":
        labels = rng.dirichlet(np.ones(4), size=(2, 3))
    else:
        labels = rng.integers(0, 4, (2, 3))
        if form == "ignore":
            labels[1, ::2] = -100
    options = {"ignore_index": -100 if form == "ignore" else None, "label_smoothing": 0.1 if form == "smooth" else 0.0}
    return logits, labels, weights, sample_weight, options


def _reference(logits, labels, weights, sample_weight, reduction, loss, gamma, options):
    counted = np.ones(labels.shape[:2], bool) if labels.dtype.kind == "f" else labels != -100
    if reduction in ("none", "sum"):
        scale = sample_weight
    elif reduction == "mean":
        scale = sample_weight / counted.sum()
    else:
        share = labels @ weights if labels.dtype.kind == "f" else weights[np.where(counted, labels, 0)] * counted
        scale = sample_weight / np.sum(sample_weight * share)
    per_position = oracle.loss_and_grad(
        logits, labels, weights, loss=loss, gamma=gamma, reduction="none", cotangent=scale, **options
    )
    values = per_position.value * scale
    return (values if reduction == "none" else values.sum()), per_position.grad


@pytest.mark.parametrize("loss, gamma", LOSSES)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "weighted_mean"])
def test_sample_weight_matches_its_definition(asarray, loss, gamma, form, reduction):
    logits, labels, weights, sample_weight, options = _case(form)
    want_value, want_grad = _reference(logits, labels, weights, sample_weight, reduction, loss, gamma, options)
    value, grad = cbloss.class_balanced_loss_and_grad(
        asarray(logits),
        asarray(labels),
        asarray(weights),
        sample_weight=asarray(sample_weight),
        loss=loss,
        gamma=gamma,
        reduction=reduction,
        **options,
    )
    np.testing.assert_allclose(np.asarray(value), want_value, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-10, atol=1e-14)


def test_sample_weight_of_ones_changes_nothing(asarray):
    logits, labels, weights, _, options = _case("ignore")
    plain = cbloss.class_balanced_loss(logits, labels, weights, reduction="weighted_mean", **options)
    ones = np.ones(labels.shape)
    assert cbloss.class_balanced_loss(
        logits, labels, weights, sample_weight=ones, reduction="weighted_mean", **options
    ) == pytest.approx(plain, rel=1e-15)


@pytest.mark.parametrize(
    "bad, error", [(np.ones(5), ValueError), (-np.ones((2, 3)), ValueError), (np.full((2, 3), np.nan), ValueError)]
)
def test_bad_sample_weight_is_named(asarray, bad, error):
    logits, labels, weights, _, _ = _case("hard")
    with pytest.raises(error, match=r"^sample_weight:"):
        cbloss.class_balanced_loss(asarray(logits), asarray(labels), weights, sample_weight=asarray(bad))


def test_module_takes_sample_weight():
    logits, labels, weights, sample_weight, _ = _case("hard")
    criterion = cbloss.ClassBalancedLoss.from_weights(weights, loss="focal")
    want = cbloss.class_balanced_loss(logits, labels, weights, loss="focal", sample_weight=sample_weight)
    assert criterion(logits, labels, sample_weight=sample_weight) == want
