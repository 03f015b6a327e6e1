"""loss_terms(grad_scale=...) folds a scalar into the gradient: it must equal scaling the gradient afterwards,
for every loss and label form (hard, ignore_index, smoothing, soft), on NumPy."""

from __future__ import annotations

import numpy as np
import pytest

from cbloss._namespace import namespace_of
from cbloss.losses import LossOptions, Terms, loss_terms, reduce_terms
from cbloss.primitives import Primitives


@pytest.mark.parametrize("loss", ["softmax", "sigmoid", "focal", "softmax_focal"])
@pytest.mark.parametrize("form", ["hard", "ignore", "smooth", "soft"])
@pytest.mark.parametrize("reduction", ["mean", "weighted_mean", "sum", "none"])
def test_grad_scale_equals_reducing_afterwards(loss, form, reduction):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 5)) * 3
    w = rng.uniform(0.2, 2.0, 5)
    if form == "soft":
        labels = rng.dirichlet(np.ones(5), size=6)
    else:
        labels = rng.integers(0, 5, size=6)
        if form == "ignore":
            labels[::2] = -1
    opts = LossOptions.make(
        loss,
        reduction=reduction,
        ignore_index=-1 if form == "ignore" else None,
        label_smoothing=0.1 if form == "smooth" else 0.0,
    )
    xp = namespace_of(z)
    ops = Primitives(xp)
    soft = form == "soft"
    plain = loss_terms(ops, z, labels, w, opts, soft=soft)
    loss_value, expected_grad = reduce_terms(xp, plain, reduction)

    def unit_scale(norm):
        return reduce_terms(xp, Terms(xp.zeros(()), 1.0, norm), reduction)[1]

    folded = loss_terms(ops, z, labels, w, opts, soft=soft, grad_scale=unit_scale)
    np.testing.assert_allclose(folded.value, plain.value, rtol=0, atol=0)
    np.testing.assert_allclose(folded.grad, expected_grad, rtol=1e-14, atol=1e-16)
    np.testing.assert_allclose(reduce_terms(xp, Terms(folded.value, None, folded.norm), reduction)[0], loss_value)
