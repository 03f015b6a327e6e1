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
        pair = ops.softplus_and_sigmoid(x)
    # a few ulps relative, plus the smallest normal (below it the reference itself underflows); the generic
    # sigmoid(-x) = exp(-softplus(x)) inherits softplus' absolute rounding, an ulp of |x|, as relative error
    bound = 4 * eps * np.maximum(1.0, np.abs(x.astype(np.float64))) * np.abs(want) + np.finfo(dtype).tiny
    for name, g, w, b in zip(("softplus", "sigmoid(x)", "sigmoid(-x)"), got, want, bound, strict=True):
        assert g.dtype == dtype, name
        err = np.abs(g.astype(np.float64) - w)
        bad = ~(err <= b)
        assert not bad.any(), f"{name}: x={x[bad][:3]}, got {g[bad][:3]}, expected {w[bad][:3]}"
    for g, w in zip(pair, got[:2], strict=True):
        np.testing.assert_array_equal(g, w)


class _Fusing(Primitives):
    fuses_elementwise = True


@pytest.mark.parametrize("loss", ["sigmoid", "focal"])
@pytest.mark.parametrize("ops", [Primitives(np), _Fusing(np)], ids=["passes", "fused"])
def test_both_evaluation_orders_match_the_oracle(ops, loss):
    """``fuses_elementwise`` picks how the hard-label sigmoid loss treats the label's column (negated in a copy of
    the logits, or evaluated apart and put back): both are exact. Each against the oracle, float64, saturated and
    ordinary logits, per position."""
    from cbloss.losses import LossOptions, loss_terms
    from tests import oracle

    rng = np.random.default_rng(3)
    z = np.concatenate([rng.normal(0.0, 3.0, (6, 4)), [[40.0, -40.0, 0.0, 1e-3], [-700.0, 30.0, -2.0, 5.0]]])
    labels = np.array([0, 1, 2, 3, 0, 1, 0, 1])
    weights = rng.uniform(0.5, 2.0, 4)
    opts = LossOptions.make(loss, reduction="none")
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        terms = loss_terms(ops, z, labels, weights, opts, soft=False)
    want = oracle.loss_and_grad(z, labels, weights, loss=loss, reduction="none", cotangent=np.ones(8))
    np.testing.assert_allclose(terms.value, want.value, rtol=1e-13, atol=0)
    # the oracle's central differences resolve gradients down to ~1e-35 (tests/oracle.py)
    np.testing.assert_allclose(terms.grad, want.grad, rtol=1e-13, atol=1e-30)


@pytest.mark.parametrize("fuses", [False, True])
def test_fuses_elementwise_selects_the_sigmoid_order(fuses):
    """The flag must actually pick the order (a silently ignored flag would only cost speed, which no value test
    sees): without fusion the label's column is put back and no negated copy of the logits is made; with fusion
    the copy is made. The focal loss always makes the copy."""
    from cbloss.losses import LossOptions, loss_terms

    class Recording(Primitives):
        fuses_elementwise = fuses

        def __init__(self, xp):
            super().__init__(xp)
            self.calls = []

        def negate_at_label(self, x, labels, *, reuse=False):
            self.calls.append("negate_at_label")
            return super().negate_at_label(x, labels, reuse=reuse)

        def put_at_label(self, x, labels, values):
            self.calls.append("put_at_label")
            return super().put_at_label(x, labels, values)

    z, labels = np.linspace(-3.0, 3.0, 12).reshape(4, 3), np.array([0, 1, 2, 1])
    for loss, expected in [("sigmoid", "negate_at_label" if fuses else "put_at_label"), ("focal", "negate_at_label")]:
        ops = Recording(np)
        loss_terms(ops, z, labels, None, LossOptions.make(loss, reduction="none"), soft=False)
        assert set(ops.calls) == {expected}, (loss, ops.calls)
