"""TorchPrimitives (PyTorch's fused kernels) against the generic Primitives on the same tensors, float64, both
layouts the adapter produces (contiguous (N, C) and the class-last view of a contiguous (N, C, H, W))."""

from __future__ import annotations

import array_api_compat.torch as xp
import pytest
import torch

from cbloss.adapters.torch import TorchPrimitives
from cbloss.primitives import Primitives

GENERIC, FUSED = Primitives(xp), TorchPrimitives(xp)


def _layouts():
    g = torch.Generator().manual_seed(0)
    flat = torch.randn(7, 6, generator=g, dtype=torch.float64) * 30
    dense = (torch.randn(2, 6, 3, 4, generator=g, dtype=torch.float64) * 30).movedim(1, -1)
    few_classes = torch.randn(300, 10, generator=g, dtype=torch.float64) * 30  # the softmax kernel transposes these
    return {"NxC": flat, "NCHW-view": dense, "NxC-few-classes": few_classes}


@pytest.mark.parametrize("layout", ["NxC", "NCHW-view", "NxC-few-classes"])
def test_fused_primitives_match_the_generic_definitions(layout):
    x = _layouts()[layout]
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, x.shape[-1], x.shape[:-1], generator=g)
    close = dict(rtol=1e-14, atol=1e-300)
    # logsumexp from the fused softmax: max(x) - log(max(p)) against max + log(sum): a few ulps of |x| (~100)
    p, lse = FUSED.softmax_and_logsumexp(x)
    p_generic, lse_generic = GENERIC.softmax_and_logsumexp(x)
    torch.testing.assert_close(p, p_generic, rtol=1e-13, atol=1e-300)
    torch.testing.assert_close(lse, lse_generic, rtol=1e-14, atol=1e-13)
    torch.testing.assert_close(FUSED.softplus(x), GENERIC.softplus(x), **close)
    for a, b in zip(FUSED.softplus_and_sigmoid(x), GENERIC.softplus_and_sigmoid(x), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-300)
    for a, b in zip(FUSED.softplus_and_sigmoids(x), GENERIC.softplus_and_sigmoids(x), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-300)
    # reuse=True: a handed-over temporary becomes sigmoid(-x) in place; the results are the same
    temporary = x.clone()
    for a, b in zip(FUSED.softplus_and_sigmoids(temporary, reuse=True), FUSED.softplus_and_sigmoids(x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # a + 0.7 b c with all terms >= 0: no cancellation, so one rounding (addcmul_) and three stay within ulps;
    # seeded, so that the check is the same every run
    a, b, c = x.abs(), torch.rand(x.shape, generator=g, dtype=x.dtype), torch.rand(x.shape, generator=g, dtype=x.dtype)
    torch.testing.assert_close(
        FUSED.multiply_add(a.clone(), b.clone(), c, 0.7), GENERIC.multiply_add(a.clone(), b.clone(), c, 0.7), **close
    )
    torch.testing.assert_close(FUSED.take_label(x, labels), GENERIC.take_label(x, labels), rtol=0, atol=0)
    torch.testing.assert_close(FUSED.negate_at_label(x, labels), GENERIC.negate_at_label(x, labels), rtol=0, atol=0)
    weights = torch.rand(x.shape[-1], generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        FUSED.take_weights(weights, labels), GENERIC.take_weights(weights, labels), rtol=0, atol=0
    )
    values = torch.rand(x.shape[:-1], generator=g, dtype=torch.float64)
    for put in (values, 0.0):  # an array of values, or one scalar for every position
        torch.testing.assert_close(
            FUSED.put_at_label(x.clone(), labels, put), GENERIC.put_at_label(x.clone(), labels, put), rtol=0, atol=0
        )
    before = x.clone()
    FUSED.negate_at_label(x, labels)  # reuse=False must leave its argument alone
    torch.testing.assert_close(x, before, rtol=0, atol=0)


def test_softplus_keeps_float64_digits_above_pytorchs_default_threshold():
    """F.softplus's default threshold (20) returns x itself, off by up to 2.7e5 ulps in float64 for 20 < x < 37."""
    x = torch.tensor([20.5, 25.0, 30.0, 36.0], dtype=torch.float64)
    exact = x + torch.log1p(torch.exp(-x))
    torch.testing.assert_close(FUSED.softplus(x), exact, rtol=2e-16, atol=0)


@pytest.mark.parametrize("loss", ["softmax", "softmax_focal"])
def test_transposed_few_classes_path_matches_the_numpy_core(loss):
    """(N, C) with few classes and many rows goes through the transposed layout: values and gradients."""
    import numpy as np

    import cbloss
    from cbloss.adapters.torch import class_balanced_loss

    rng = np.random.default_rng(3)
    z, y, w = rng.normal(size=(600, 10)) * 4, rng.integers(0, 10, 600), rng.uniform(0.5, 2, 10)
    expected, expected_grad = cbloss.class_balanced_loss_and_grad(z, y, w, loss=loss, axis=1)
    x = torch.tensor(z, requires_grad=True)
    got = class_balanced_loss(x, torch.tensor(y), torch.tensor(w), loss=loss)
    got.backward()
    np.testing.assert_allclose(got.item(), expected, rtol=1e-13)
    np.testing.assert_allclose(x.grad.numpy(), expected_grad, rtol=1e-12, atol=1e-17)
