"""Per-position sample weights (docs/conventions.md §7): each position's loss times its sample weight; "mean"
divides by the counted positions, "weighted_mean" by the sum of sample weight times class weight. The reference is
the oracle's per-position losses and gradients, reduced here by that definition."""

from __future__ import annotations

import numpy as np
import pytest

import cbloss
from tests import oracle

LOSSES = [("softmax", None), ("sigmoid", None), ("focal", 2.0), ("softmax_focal", 0.5)]
FORMS = ["hard", "ignore", "smooth", "ignore_smooth", "soft", "soft_smooth"]
# multi-hot targets: 0/1 with a position without positives, and fractional ones with smoothing (§6.5)
MULTI_FORMS = ["class", "sample", "class_fractional_smooth", "sample_fractional_smooth"]
CASES = [(loss, gamma, form) for loss, gamma in LOSSES for form in FORMS] + [
    (loss, gamma, form) for loss, gamma in LOSSES[1:3] for form in MULTI_FORMS
]


def _case(form: str):
    rng = np.random.default_rng(11)
    logits = rng.normal(size=(2, 3, 4)) * 2
    weights = rng.uniform(0.25, 3.0, 4)
    sample_weight = rng.uniform(0.0, 2.0, (2, 3))
    sample_weight[0, 0] = 0.0
    multi_label = form.split("_")[0] if form.startswith(("class", "sample")) else None
    if multi_label and "fractional" in form:
        labels = rng.integers(0, 5, (2, 3, 4)) / 4.0
    elif multi_label:
        labels = (rng.random((2, 3, 4)) < 0.4).astype(np.float64)
        labels[1, 2] = 0.0
    elif form.startswith("soft"):
        labels = rng.dirichlet(np.ones(4), size=(2, 3))
    else:
        labels = rng.integers(0, 4, (2, 3))
        if "ignore" in form:
            labels[1, ::2] = -100
    options = {
        "ignore_index": -100 if "ignore" in form else None,
        "label_smoothing": 0.1 if "smooth" in form else 0.0,
        "multi_label": multi_label,
    }
    return logits, labels, weights, sample_weight, options


def _reference(logits, labels, weights, sample_weight, reduction, loss, gamma, options):
    soft = labels.dtype.kind == "f"
    counted = np.ones(labels.shape[:2], bool) if soft else labels != -100
    w = np.ones(logits.shape[-1]) if weights is None else weights
    if reduction in ("none", "sum"):
        scale = sample_weight
    elif reduction == "mean":
        scale = sample_weight / counted.sum()
    else:
        if options["multi_label"]:  # "sample": the mean class weight of the positives, 1 without any
            positives = labels.sum(axis=-1)
            share = np.where(positives > 0, (labels @ w) / np.where(positives > 0, positives, 1.0), 1.0)
        else:
            share = labels @ w if soft else w[np.where(counted, labels, 0)] * counted
        scale = sample_weight / np.sum(sample_weight * share)
    per_position = oracle.loss_and_grad(
        logits, labels, weights, loss=loss, gamma=gamma, reduction="none", cotangent=scale, **options
    )
    values = per_position.value * scale
    return (values if reduction == "none" else values.sum()), per_position.grad


@pytest.mark.parametrize("loss, gamma, form", CASES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "weighted_mean"])
@pytest.mark.parametrize("weighted", [True, False], ids=["weights", "no-weights"])
def test_sample_weight_matches_its_definition(asarray, loss, gamma, form, reduction, weighted):
    logits, labels, weights, sample_weight, options = _case(form)
    weights = weights if weighted else None
    if options["multi_label"] == "class" and reduction == "weighted_mean":
        with pytest.raises(ValueError, match=r"^reduction:"):
            cbloss.class_balanced_loss(
                logits, labels, weights, sample_weight=sample_weight, loss=loss, reduction=reduction, **options
            )
        return
    want_value, want_grad = _reference(logits, labels, weights, sample_weight, reduction, loss, gamma, options)
    value, grad = cbloss.class_balanced_loss_and_grad(
        asarray(logits),
        asarray(labels),
        None if weights is None else asarray(weights),
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


def test_a_tiny_negative_sample_weight_is_named_though_the_cast_rounds_it_to_zero(asarray):
    """-1e-50 in float64 is -0.0 in float32 logits' compute dtype, which passes ">= 0": checked as given too, as
    class weights are."""
    logits, labels, _, _, _ = _case("hard")
    bad = np.ones(labels.shape)
    bad.flat[1] = -1e-50
    with pytest.raises(ValueError, match=r"^sample_weight: must be finite and >= 0"):
        cbloss.class_balanced_loss(asarray(logits.astype(np.float32)), asarray(labels), sample_weight=asarray(bad))


def test_module_takes_sample_weight():
    logits, labels, weights, sample_weight, _ = _case("hard")
    criterion = cbloss.ClassBalancedLoss.from_weights(weights, loss="focal")
    want = cbloss.class_balanced_loss(logits, labels, weights, loss="focal", sample_weight=sample_weight)
    assert criterion(logits, labels, sample_weight=sample_weight) == want
