"""Properties of docs/conventions.md §2-§7 checked with hypothesis on the core (NumPy): gamma = 0 reproduces the
non-focal losses bitwise; beta = 0 and beta = 1 give equal and inverse-frequency weights; the recursion equals the
closed form; weights decrease as counts grow; permuting classes permutes results; values and gradients stay finite
for |z| up to 1e4 and gamma in [0, 5] in every dtype."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import cbloss
from tests import oracle

SETTINGS = settings(max_examples=40, deadline=None)
REDUCTIONS = ["none", "sum", "mean", "weighted_mean"]


@st.composite
def problems(draw, max_abs=30.0, dtype="float64", soft=None, min_classes=2):
    """(logits, labels, weights, options) with the class axis last: 1-2 batch dims or unbatched, 2-6 classes."""
    C = draw(st.integers(min_classes, 6))
    batch = draw(st.sampled_from([(), (1,), (3,), (2, 3)]))
    width = {"float16": 16, "float32": 32, "float64": 64}[dtype]
    logits = draw(
        hnp.arrays(dtype, (*batch, C), elements=st.floats(-max_abs, max_abs, width=width, allow_subnormal=False))
    )
    soft = draw(st.booleans()) if soft is None else soft
    if soft:
        parts = draw(hnp.arrays(np.int64, (*batch, C), elements=st.integers(0, 8)))
        parts[..., 0] += parts.sum(axis=-1) == 0  # never all zero
        labels = (parts / parts.sum(axis=-1, keepdims=True)).astype(dtype)
    else:
        labels = draw(hnp.arrays(np.int64, batch, elements=st.integers(0, C - 1)))
    weights = draw(st.none() | hnp.arrays(np.float64, C, elements=st.floats(0.05, 5.0)))
    options = {
        "reduction": draw(st.sampled_from(REDUCTIONS)),
        "label_smoothing": draw(st.sampled_from([0.0, 0.1])),
    }
    if not soft and batch and draw(st.booleans()):
        labels = labels.copy()
        labels.reshape(-1)[0] = -100
        options["ignore_index"] = -100
    return logits, labels, weights, options


def run(logits, labels, weights, **options):
    value, grad = cbloss.class_balanced_loss_and_grad(logits, labels, weights, **options)
    return np.asarray(value), np.asarray(grad)


@pytest.mark.parametrize(("focal", "plain"), [("focal", "sigmoid"), ("softmax_focal", "softmax")])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@SETTINGS
@given(data=st.data())
def test_gamma_zero_is_the_plain_loss_bitwise(focal, plain, dtype, data):
    logits, labels, weights, options = data.draw(problems(dtype=dtype))
    got = run(logits, labels, weights, loss=focal, gamma=0.0, **options)
    want = run(logits, labels, weights, loss=plain, **options)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("loss", ["softmax", "sigmoid", "focal", "softmax_focal"])
@SETTINGS
@given(data=st.data())
def test_permuting_classes_permutes_results(loss, data):
    logits, labels, weights, options = data.draw(problems())
    C = logits.shape[-1]
    perm = np.asarray(data.draw(st.permutations(range(C))))
    if labels.dtype.kind == "f":
        labels_p = labels[..., perm]
    else:
        new_index = np.argsort(perm)  # class perm[j] is now class j
        labels_p = np.where(labels < 0, labels, new_index[np.clip(labels, 0, C - 1)])
    weights_p = None if weights is None else weights[perm]
    value, grad = run(logits, labels, weights, loss=loss, **options)
    value_p, grad_p = run(logits[..., perm], labels_p, weights_p, loss=loss, **options)
    # the same sums in another order: equal up to float64 rounding of terms of size max(1, |z|) * max(w) * C
    scale = 1e-14 * max(1.0, float(np.abs(logits).max())) * C * (1.0 if weights is None else max(1.0, weights.max()))
    atol = scale * (np.size(labels) if options["reduction"] == "sum" else 1)
    np.testing.assert_allclose(value_p, value, rtol=1e-13, atol=atol)
    np.testing.assert_allclose(grad_p, grad[..., perm], rtol=1e-13, atol=scale)


@pytest.mark.parametrize("loss", ["softmax", "sigmoid", "focal", "softmax_focal"])
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
@SETTINGS
@given(data=st.data())
def test_finite_for_large_logits_and_any_gamma(loss, dtype, data):
    max_abs = 1e4 if dtype != "float16" else 6e4  # float16's whole range
    logits, labels, weights, options = data.draw(problems(max_abs=max_abs, dtype=dtype))
    # push some logits to the extremes: saturation is where the known traps are
    extreme = data.draw(hnp.arrays(np.bool_, logits.shape))
    sign = data.draw(hnp.arrays(np.bool_, logits.shape))
    logits = np.where(extreme, np.where(sign, max_abs, -max_abs), logits).astype(dtype)
    if loss in ("focal", "softmax_focal"):
        options["gamma"] = data.draw(st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 5.0]) | st.floats(0.0, 5.0))
    value, grad = run(logits, labels, weights, loss=loss, **options)
    assert value.dtype == (np.float32 if dtype == "float16" else np.dtype(dtype))
    assert grad.dtype == np.dtype(dtype) and grad.shape == logits.shape
    assert np.all(np.isfinite(value)), value
    assert np.all(np.isfinite(grad)), grad
    assert np.all(value >= 0)


@pytest.mark.parametrize("loss", ["sigmoid", "focal"])
@pytest.mark.parametrize("multi_label", ["class", "sample"])
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
@SETTINGS
@given(data=st.data())
def test_multi_hot_finite_for_large_logits_and_any_gamma(loss, multi_label, dtype, data):
    """The multi-hot losses stay finite at saturated logits of either sign, against 0/1 and fractional targets."""
    max_abs = 1e4 if dtype != "float16" else 6e4
    logits, _, weights, options = data.draw(problems(max_abs=max_abs, dtype=dtype))
    extreme = data.draw(hnp.arrays(np.bool_, logits.shape))
    sign = data.draw(hnp.arrays(np.bool_, logits.shape))
    logits = np.where(extreme, np.where(sign, max_abs, -max_abs), logits).astype(dtype)
    fractional = data.draw(st.booleans())
    targets = data.draw(hnp.arrays(np.int64, logits.shape, elements=st.integers(0, 4 if fractional else 1)))
    targets = targets / 4.0 if fractional else targets
    options.pop("ignore_index", None)
    if multi_label == "class" and options["reduction"] == "weighted_mean":
        options["reduction"] = "mean"
    if loss == "focal":
        options["gamma"] = data.draw(st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 5.0]) | st.floats(0.0, 5.0))
    value, grad = run(logits, targets, weights, loss=loss, multi_label=multi_label, **options)
    assert grad.dtype == np.dtype(dtype) and grad.shape == logits.shape
    assert np.all(np.isfinite(value)), value
    assert np.all(np.isfinite(grad)), grad
    assert np.all(value >= 0)


# weights


counts = hnp.arrays(np.float64, st.integers(2, 10), elements=st.integers(1, 10**9).map(float))


@SETTINGS
@given(n=counts)
def test_beta_zero_gives_equal_weights(n):
    for normalize in ("classes", None):
        np.testing.assert_array_equal(cbloss.class_balanced_weights(n, 0.0, normalize=normalize), np.ones(len(n)))
    np.testing.assert_allclose(cbloss.class_balanced_weights(n, 0.0, normalize="samples"), 1.0, rtol=1e-14)


@SETTINGS
@given(n=counts)
def test_beta_one_gives_inverse_frequency(n):
    np.testing.assert_array_equal(cbloss.class_balanced_weights(n, 1.0, normalize=None), 1.0 / n)
    w = cbloss.class_balanced_weights(n, 1.0)
    np.testing.assert_allclose(w * n, np.full(len(n), (w * n)[0]), rtol=1e-14)  # w proportional to 1/n


@SETTINGS
@given(n=st.lists(st.integers(0, 300), min_size=1, max_size=8), beta=st.floats(0.0, 1.0))
def test_recursion_equals_closed_form(n, beta):
    n = np.array(n)
    rec = np.asarray(cbloss.effective_number_recursive(n, beta))
    closed = np.asarray(cbloss.effective_number(n, beta))
    # the float64 recursion rounds once per step; the closed form is within 2 ulps of the exact value
    np.testing.assert_allclose(rec, closed, rtol=(n.max() + 2) * 2.0**-52, atol=0)
    for k, c in zip(n[:3], closed[:3], strict=False):
        exact = float(oracle.effective_number(int(k), beta))
        assert abs(c - exact) <= 2 * np.spacing(exact) if exact else c == 0


@SETTINGS
@given(
    n=st.lists(st.integers(1, 10**12), min_size=2, max_size=8, unique=True).map(sorted),
    beta=st.floats(0.0, 1.0),
    normalize=st.sampled_from(["classes", "samples", None]),
)
def test_weights_decrease_as_counts_grow(n, beta, normalize):
    w = cbloss.class_balanced_weights(np.array(n, dtype=np.float64), beta, normalize=normalize)
    assert np.all(np.diff(w) <= 0), w
    # strictly wherever the exact weights are distinct in float64
    exact = oracle.class_weights(n, beta, normalize)
    assert np.all(np.diff(w)[np.diff(exact) < -4 * np.spacing(exact[1:])] < 0), (w, exact)
