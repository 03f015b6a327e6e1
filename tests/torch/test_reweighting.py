"""Weights that change during training (cbloss.schedules) and per-position sample weights in the PyTorch adapter."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import cbloss
from cbloss.adapters.torch import ClassBalancedLoss, class_balanced_loss
from cbloss.schedules import DeferredReweighting

COUNTS = [50, 20, 10, 5, 2]
LOSSES = ["softmax", "sigmoid", "focal", "softmax_focal"]


@pytest.mark.parametrize("loss", LOSSES)
def test_set_weights_shows_in_the_next_call_and_rejects_bad_weights(loss):
    schedule = DeferredReweighting(COUNTS, 0.999, start=2)
    crit = ClassBalancedLoss.from_weights(schedule(0), loss=loss)
    x, y = torch.randn(7, 5, dtype=torch.float64), torch.randint(0, 5, (7,))
    for epoch in range(4):
        crit.set_weights(schedule(epoch))
        want = cbloss.class_balanced_loss(x.numpy(), y.numpy(), schedule(epoch), loss=loss)
        np.testing.assert_allclose(crit(x, y).item(), want, rtol=1e-13)
    with pytest.raises(ValueError, match=r"^weights"):
        crit.set_weights(np.ones(4))
    with pytest.raises(ValueError, match=r"^weights"):
        crit.set_weights([1.0, -1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"^weights: this loss is unweighted"):  # nothing to re-weight
        ClassBalancedLoss.from_weights(None, loss=loss).set_weights(schedule(0))


def test_set_weights_forgets_how_the_weights_were_made():
    """After set_weights the repr no longer shows the beta and normalize of the weights it replaced."""
    crit = ClassBalancedLoss(COUNTS, 0.9999, loss="focal")
    assert "beta=0.9999, normalize='classes'" in repr(crit)
    crit.set_weights(np.ones(5))
    assert "beta=None, normalize=None" in repr(crit) and (crit.beta, crit.normalize) == (None, None)


@pytest.mark.parametrize("built", ["from_weights", "from_counts"])
@pytest.mark.parametrize("loss", ["softmax", "focal"])
def test_set_weights_in_a_compiled_step_does_not_recompile(loss, built):
    """The buffer keeps its identity: a compiled module reads the new values, with one graph and no recompile,
    for a module built from weights and one built from counts alike."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    schedule = DeferredReweighting(COUNTS, 0.999, start=1)
    if built == "from_weights":
        crit = ClassBalancedLoss.from_weights(schedule(0), loss=loss)
    else:
        crit = ClassBalancedLoss(COUNTS, 0.9, loss=loss)
    compiled = torch.compile(crit, fullgraph=True, backend="aot_eager")
    x, y = torch.randn(6, 5), torch.randint(0, 5, (6,))
    with warnings.catch_warnings(), torch._dynamo.config.patch(error_on_recompile=True):
        warnings.simplefilter("ignore")
        for epoch in range(3):
            crit.set_weights(schedule(epoch))
            got = compiled(x, y)
            want = cbloss.class_balanced_loss(x.double().numpy(), y.numpy(), schedule(epoch), loss=loss)
            np.testing.assert_allclose(got.item(), want, rtol=1e-5)
    assert counters["stats"]["unique_graphs"] == 1


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "weighted_mean"])
@pytest.mark.parametrize("form", ["hard", "ignore", "smooth", "soft"])
def test_sample_weight_matches_the_core(loss, reduction, form):
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(6, 5, 3))  # class dim 1, as in PyTorch
    weights = rng.uniform(0.5, 2.0, 5)
    sample_weight = rng.uniform(0.0, 2.0, (6, 3))
    options = {"loss": loss, "reduction": reduction}
    if form == "soft":
        labels = rng.dirichlet(np.ones(5), size=(6, 3)).transpose(0, 2, 1)
    else:
        labels = rng.integers(0, 5, (6, 3))
        if form == "ignore":
            labels[::2, 0] = -1
            options["ignore_index"] = -1
        options["label_smoothing"] = 0.1 if form == "smooth" else 0.0
    want, want_grad = cbloss.class_balanced_loss_and_grad(
        logits, labels, weights, sample_weight=sample_weight, axis=1, **options
    )
    x = torch.tensor(logits, requires_grad=True)
    got = class_balanced_loss(x, torch.tensor(labels), weights, sample_weight=torch.tensor(sample_weight), **options)
    got.backward(torch.ones_like(got))
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-12, atol=1e-15)
    if reduction != "none":
        np.testing.assert_allclose(x.grad.numpy(), want_grad, rtol=1e-11, atol=1e-15)
    module = ClassBalancedLoss.from_weights(weights, **options)
    np.testing.assert_allclose(
        module(x.detach(), torch.tensor(labels), sample_weight=sample_weight).numpy(), want, rtol=1e-12, atol=1e-15
    )


def test_sample_weight_is_checked():
    x, y = torch.zeros(3, 4), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match=r"^sample_weight"):
        class_balanced_loss(x, y, sample_weight=torch.ones(4))
    with pytest.raises(ValueError, match=r"^sample_weight"):
        class_balanced_loss(x, y, sample_weight=-torch.ones(3))
