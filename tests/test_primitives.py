"""The sigmoid pieces of the generic Primitives and of SharedExpPrimitives (one exp and one log1p per element)
against mpmath, float64 and float32, across the whole range: saturated, tiny, zero and overflowing arguments."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from cbloss.primitives import Primitives, SharedExpPrimitives

mpmath.mp.dps = 40
X = np.concatenate([np.linspace(-60.0, 60.0, 241), [-800.0, -745.5, -100.0, -1e-30, 0.0, 1e-30, 100.0, 800.0]])


def _reference(x: float) -> tuple[float, float, float]:
    x = mpmath.mpf(x)
    softplus = mpmath.log1p(mpmath.exp(x))
    return float(softplus), float(1 / (1 + mpmath.exp(-x))), float(1 / (1 + mpmath.exp(x)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ops", [Primitives(np), SharedExpPrimitives(np)], ids=["generic", "shared_exp"])
def test_softplus_and_sigmoids(ops, dtype):
    x = X.astype(dtype)
    want = np.array([_reference(float(v)) for v in x]).T.astype(dtype).astype(np.float64)
    eps = np.finfo(dtype).eps
    with np.errstate(over="ignore", under="ignore"):
        got = ops.softplus_and_sigmoids(x)
    # a few ulps relative, plus the smallest normal (below it the reference itself underflows); the generic
    # sigmoid(-x) = exp(-softplus(x)) inherits softplus' absolute rounding, an ulp of |x|, as relative error
    bound = 4 * eps * np.maximum(1.0, np.abs(x.astype(np.float64))) * np.abs(want) + np.finfo(dtype).tiny
    for name, g, w, b in zip(("softplus", "sigmoid(x)", "sigmoid(-x)"), got, want, bound, strict=True):
        assert g.dtype == dtype, name
        err = np.abs(g.astype(np.float64) - w)
        bad = ~(err <= b)
        assert not bad.any(), f"{name}: x={x[bad][:3]}, got {g[bad][:3]}, expected {w[bad][:3]}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ops", [Primitives(np), SharedExpPrimitives(np)], ids=["generic", "shared_exp"])
def test_softplus_pair_and_sigmoids_keeps_relative_digits(ops, dtype):
    """Both sides' pieces, (softplus(x), softplus(-x), sigmoid(x), sigmoid(-x)), each within a few ulps of its own
    magnitude (mpmath) across the whole range: the sigmoids are the accurate forms, with no max(1, |x|) factor."""
    x = X.astype(dtype)
    plus = np.array([_reference(float(v)) for v in x]).T
    minus = np.array([_reference(-float(v)) for v in x]).T
    want = [w.astype(dtype).astype(np.float64) for w in (plus[0], minus[0], plus[1], plus[2])]
    eps, tiny = np.finfo(dtype).eps, np.finfo(dtype).tiny
    with np.errstate(over="ignore", under="ignore"):
        got = ops.softplus_pair_and_sigmoids(x)
    for name, g, w in zip(("softplus(x)", "softplus(-x)", "sigmoid(x)", "sigmoid(-x)"), got, want, strict=True):
        assert g.dtype == dtype, name
        bad = ~(np.abs(g.astype(np.float64) - w) <= 4 * eps * np.abs(w) + tiny)
        assert not bad.any(), f"{name}: x={x[bad][:3]}, got {g[bad][:3]}, expected {w[bad][:3]}"


@pytest.mark.parametrize("ops", [Primitives(np), SharedExpPrimitives(np)], ids=["generic", "shared_exp"])
def test_lerp_is_exact_at_weights_zero_and_one(ops):
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=50) * 10.0 ** rng.integers(-300, 300, 50), rng.normal(size=50) * 1e-300
    np.testing.assert_array_equal(ops.lerp(x, y, np.zeros(50)), x)
    np.testing.assert_array_equal(ops.lerp_(x.copy(), y, np.ones(50)), y)
    weight = rng.uniform(size=50)
    np.testing.assert_allclose(ops.lerp(x, y, weight), (1 - weight) * x + weight * y, rtol=1e-15)


@pytest.mark.parametrize("loss", ["sigmoid", "focal", "softmax_focal"])
@pytest.mark.parametrize("ops", [Primitives(np), SharedExpPrimitives(np)], ids=["generic", "shared_exp"])
def test_hard_label_path_matches_the_oracle_per_position(ops, loss):
    """The hard-label path of the losses that evaluate the label's column apart, with either primitive set:
    saturated and ordinary logits, float64, per position, against the oracle."""
    from cbloss.engine import evaluate
    from cbloss.options import loss_options
    from tests import oracle

    rng = np.random.default_rng(3)
    z = np.concatenate([rng.normal(0.0, 3.0, (6, 4)), [[40.0, -40.0, 0.0, 1e-3], [-700.0, 30.0, -2.0, 5.0]]])
    labels = np.array([0, 1, 2, 3, 0, 1, 0, 1])
    weights = rng.uniform(0.5, 2.0, 4)
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        value, grad = evaluate(
            ops, z, labels, weights, loss_options(loss=loss, reduction="none"), soft=False, with_grad=True
        )
    want = oracle.loss_and_grad(z, labels, weights, loss=loss, reduction="none", cotangent=np.ones(8))
    np.testing.assert_allclose(value, want.value, rtol=1e-13, atol=0)
    # the oracle's central differences resolve gradients down to ~1e-35 (tests/oracle.py)
    np.testing.assert_allclose(grad, want.grad, rtol=1e-13, atol=1e-30)


@pytest.mark.parametrize("ops", [Primitives(np), SharedExpPrimitives(np)], ids=["generic", "shared_exp"])
def test_put_at_label_and_softplus_and_sigmoid_agree_with_their_full_forms(ops):
    """The generic put_at_label_ (for an array the caller allocated) is the functional put_at_label, and
    softplus_and_sigmoid is the first two of softplus_and_sigmoids, bit for bit."""
    rng = np.random.default_rng(0)
    x = rng.normal(scale=30.0, size=(5, 4))
    labels, values = rng.integers(0, 4, size=5), rng.normal(size=5)
    expected = x.copy()
    expected[np.arange(5), labels] = values
    np.testing.assert_array_equal(ops.put_at_label(x, labels, values), expected)
    np.testing.assert_array_equal(ops.put_at_label_(x.copy(), labels, values), expected)
    with np.errstate(over="ignore", under="ignore"):
        both, three = ops.softplus_and_sigmoid(x), ops.softplus_and_sigmoids(x)
    for a, b in zip(both, three[:2], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ops", [Primitives(np), SharedExpPrimitives(np)], ids=["generic", "shared_exp"])
def test_softplus_and_sigmoids_of_a_handed_over_array_is_the_functional_form(ops, dtype):
    """softplus_and_sigmoids_ (for an array the caller allocated and hands over) gives softplus_and_sigmoids,
    bit for bit, across the whole range."""
    x = X.astype(dtype)
    with np.errstate(over="ignore", under="ignore"):
        want = ops.softplus_and_sigmoids(x)
        got = ops.softplus_and_sigmoids_(x.copy())
    for name, g, w in zip(("softplus", "sigmoid(x)", "sigmoid(-x)"), got, want, strict=True):
        assert g.dtype == dtype, name
        np.testing.assert_array_equal(g, w, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ops", [Primitives(np), SharedExpPrimitives(np)], ids=["generic", "shared_exp"])
def test_softplus_and_sigmoids_of_negation_is_the_functional_form_at_minus_x(ops, dtype):
    """softplus_and_sigmoids_of_negation(x) (the other side, from x's own expressions) gives
    softplus_and_sigmoids(-x), bit for bit, across the whole range: so it is as exact as that form."""
    x = X.astype(dtype)
    with np.errstate(over="ignore", under="ignore"):
        want = ops.softplus_and_sigmoids(-x)
        got = ops.softplus_and_sigmoids_of_negation(x)
    for name, g, w in zip(("softplus(-x)", "sigmoid(-x)", "sigmoid(x)"), got, want, strict=True):
        assert g.dtype == dtype, name
        np.testing.assert_array_equal(g, w, err_msg=name)


def _check_sign_split(x: np.ndarray, h: np.ndarray, rest: np.ndarray, signed: np.ndarray) -> None:
    """h is a 0/1 step on x's side (either at zero), rest = log1p(exp(-|x|)) and signed = sigmoid(x) - h, each to
    a few ulps of its own magnitude (mpmath), times max(1, |x|) where a sigmoid is exp(-softplus) (see above)."""
    eps = np.finfo(x.dtype).eps
    assert set(np.unique(h).tolist()) <= {0.0, 1.0}
    assert np.all(h[x > 0] == 1.0) and np.all(h[x < 0] == 0.0)
    for v, hv, rv, sv in zip(x.tolist(), h.tolist(), rest.tolist(), signed.tolist(), strict=True):
        m = mpmath.mpf(v)
        want_rest = float(mpmath.log1p(mpmath.exp(-abs(m))))
        want_signed = float(-1 / (1 + mpmath.exp(m)) if hv else 1 / (1 + mpmath.exp(-m)))  # no cancellation
        tiny, scale = np.finfo(x.dtype).tiny, 4 * eps * max(1.0, abs(v))
        assert abs(rv - want_rest) <= scale * abs(want_rest) + tiny, (v, rv, want_rest)
        assert abs(sv - want_signed) <= scale * abs(want_signed) + tiny, (v, sv, want_signed)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ops", [Primitives(np), SharedExpPrimitives(np)], ids=["generic", "shared_exp"])
def test_sign_split_sigmoid_keeps_relative_digits(ops, dtype):
    x = np.concatenate([X, [-0.0]]).astype(dtype)
    with np.errstate(over="ignore", under="ignore"):
        h, rest, signed = ops.sign_split_sigmoid(x)
    assert h.dtype == rest.dtype == signed.dtype == dtype
    _check_sign_split(x, h, rest, signed)
