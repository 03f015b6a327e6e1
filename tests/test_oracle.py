"""The oracle checks itself: its central-difference gradients against textbook analytic gradients, and its
losses against their definitions written another way, so that a disagreement in the conformance suite points at
the code under test."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from tests import oracle

Z = np.array([[1.5, -2.0, 0.25, 4.0], [-30.0, 30.0, 0.0, 1.0]])


def _mp(x):
    return [mpmath.mpf(float(v)) for v in x]


@pytest.mark.parametrize("row", range(len(Z)))
def test_softmax_and_sigmoid_gradients_are_textbook(row):
    with mpmath.workdps(oracle.DPS):
        z = _mp(Z[row])
        C = len(z)
        total = mpmath.fsum(mpmath.exp(v) for v in z)
        p = [mpmath.exp(v) / total for v in z]
        s = [1 / (1 + mpmath.exp(-v)) for v in z]
        _, J = oracle._row_terms(tuple(Z[row]), "softmax", 0.0)
        _, Js = oracle._row_terms(tuple(Z[row]), "sigmoid", 0.0)
        for c in range(C):
            for j in range(C):
                onehot = 1 if j == c else 0
                assert abs(J[c][j] - (p[j] - onehot)) < mpmath.mpf(10) ** -30
                assert abs(Js[c][j] - (s[j] - onehot)) < mpmath.mpf(10) ** -30


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("loss", ["focal", "softmax_focal"])
def test_focal_gradient_matches_mpmath_diff(loss, gamma):
    row = tuple(Z[0])
    _, J = oracle._row_terms(row, loss, gamma)
    with mpmath.workdps(oracle.DPS):
        for c in range(len(row)):
            for j in range(len(row)):

                def f(x, c=c, j=j):
                    z = _mp(row)
                    z[j] = x
                    return oracle.per_class_losses(z, loss, gamma)[c]

                want = mpmath.diff(f, mpmath.mpf(row[j]))
                assert abs(J[c][j] - want) < mpmath.mpf(10) ** -30 * max(1, abs(want))


def test_definitions():
    z = Z[0]
    with mpmath.workdps(oracle.DPS):
        zm = _mp(z)
        soft = oracle.per_class_losses(zm, "softmax", 0.0)
        sig = oracle.per_class_losses(zm, "sigmoid", 0.0)
        assert oracle.per_class_losses(zm, "focal", 0.0) == sig
        assert oracle.per_class_losses(zm, "softmax_focal", 0.0) == soft
        total = mpmath.fsum(mpmath.exp(v) for v in zm)
        for c in range(len(z)):
            p = mpmath.exp(zm[c]) / total
            assert abs(soft[c] + mpmath.log(p)) < mpmath.mpf(10) ** -50
            sf = oracle.per_class_losses(zm, "softmax_focal", 2.0)[c]
            assert abs(sf - (1 - p) ** 2 * -mpmath.log(p)) < mpmath.mpf(10) ** -45
            binary = [1 / (1 + mpmath.exp(-v)) for v in zm]
            bce = -mpmath.fsum(mpmath.log(b if i == c else 1 - b) for i, b in enumerate(binary))
            assert abs(sig[c] - bce) < mpmath.mpf(10) ** -45


def test_reductions_and_smoothing_by_hand():
    """A two-position softmax case written out: smoothing, weighted_mean's unsmoothed w_y denominator."""
    z = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, -1.0]])
    y = np.array([2, -100])
    w = np.array([0.5, 1.0, 2.0])
    eps = 0.25
    lse = np.log(np.exp(z[0]).sum())
    nll = lse - z[0]
    t = (1 - eps) * np.eye(3)[2] + eps / 3
    value = float((t * w * nll).sum())
    for reduction, want in [("sum", value), ("mean", value), ("weighted_mean", value / 2.0)]:
        got = oracle.loss_and_grad(z, y, w, reduction=reduction, label_smoothing=eps, ignore_index=-100)
        np.testing.assert_allclose(got.value, want, rtol=1e-15)
    none = oracle.loss_and_grad(z, y, w, reduction="none", label_smoothing=eps, ignore_index=-100)
    np.testing.assert_allclose(none.value, [value, 0.0], rtol=1e-15)
    p = np.exp(z[0] - lse)
    np.testing.assert_allclose(none.grad[0], (t * w).sum() * p - t * w, rtol=1e-14)
    np.testing.assert_array_equal(none.grad[1], 0.0)
    # soft targets: denominator sum_c t_c w_c with the unsmoothed t
    soft = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    got = oracle.loss_and_grad(z, soft, w, reduction="weighted_mean", label_smoothing=eps)
    total = oracle.loss_and_grad(z, soft, w, reduction="sum", label_smoothing=eps)
    np.testing.assert_allclose(got.value, total.value / (0.75 + 2.0), rtol=1e-15)
    # every position ignored: 0
    assert oracle.loss_and_grad(z, np.array([-100, -100]), w, reduction="weighted_mean", ignore_index=-100).value == 0
