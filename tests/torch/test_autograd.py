"""Gradients through torch's machinery: the adapter's autograd.Function under torch.func transforms, the
returned gradient owned by the caller, double backward; and the neutral core on torch tensors, differentiated
by torch autograd through its generic Array-API operations, against the oracle (docs/conventions.md §10, §15)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

import cbloss
from cbloss.adapters.torch import class_balanced_loss
from tests import oracle

LOSSES = ["softmax", "sigmoid", "focal", "softmax_focal"]
SHAPES = [(6, 5), (2, 5, 3, 2)]


def _data(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    w = torch.rand(shape[1], generator=g, dtype=torch.float64) + 0.25
    return x, y, w


def _autograd_grad(f, x):
    x = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(f(x), x)
    return grad


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("loss", LOSSES)
def test_torch_func_grad_vmap_jacrev_match_autograd(loss, shape):
    x, y, w = _data(shape)
    gamma = 1.5 if "focal" in loss else None

    def mean_loss(x):
        return class_balanced_loss(x, y, w, loss=loss, gamma=gamma, reduction="weighted_mean", label_smoothing=0.1)

    def per_position(x):
        return class_balanced_loss(x, y, w, loss=loss, gamma=gamma, reduction="none")

    expected = _autograd_grad(mean_loss, x)
    torch.testing.assert_close(torch.func.grad(mean_loss)(x), expected, rtol=1e-14, atol=1e-16)

    batch = torch.stack([x, 2 * x, -x])
    per_sample = torch.stack([_autograd_grad(mean_loss, b) for b in batch])
    torch.testing.assert_close(torch.func.vmap(torch.func.grad(mean_loss))(batch), per_sample, rtol=1e-14, atol=1e-16)
    torch.testing.assert_close(torch.func.vmap(mean_loss)(batch), torch.stack([mean_loss(b) for b in batch]))

    # jacrev of the per-position losses: row p is the gradient of loss[p], zero outside position p
    jacobian = torch.func.jacrev(per_position)(x)
    positions = y.numel()
    rows = jacobian.reshape(positions, *x.shape)
    for p in range(positions):
        cotangent = torch.zeros(positions, dtype=x.dtype)
        cotangent[p] = 1.0
        xr = x.clone().requires_grad_()
        (row,) = torch.autograd.grad(per_position(xr), xr, cotangent.view(y.shape))
        torch.testing.assert_close(rows[p], row, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("mapped", ["target", "weights", "sample_weight", "all"])
@pytest.mark.parametrize("loss", LOSSES)
def test_vmap_over_the_logits_with_the_target_and_the_weights(loss, mapped):
    """vmap over the logits together with the target, the class weights or the sample weights (validate=False, as
    the eager checks read values; docs/torch.md): each mapped loss and its gradient are the loop's. Over shared
    logits, the losses with the core's gradient refuse to map the others (vmap cannot write a mapped value into
    the core's unmapped temporaries) where they would write one: an error, never a wrong number; CB softmax maps
    them."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 6, 5, 3, generator=g, dtype=torch.float64)
    given = {
        "target": torch.randint(0, 5, (4, 6, 3), generator=g),
        "weights": torch.rand(4, 5, generator=g, dtype=torch.float64) + 0.25,
        "sample_weight": torch.rand(4, 6, 3, generator=g, dtype=torch.float64),
    }
    names = list(given) if mapped == "all" else [mapped]
    shared = {"target": given["target"][0], "weights": given["weights"][0], "sample_weight": None}

    def loss_of(x, *values):
        arguments = {**shared, **dict(zip(names, values, strict=True))}
        target, weights, sample_weight = arguments.values()
        options = dict(sample_weight=sample_weight, loss=loss, validate=False, reduction="weighted_mean")
        return class_balanced_loss(x, target, weights, **options)

    def grad_of(x, *values):
        return torch.func.grad(loss_of)(x, *values)

    batches = [[values[i] for values in [logits, *(given[name] for name in names)]] for i in range(4)]
    for function in (loss_of, grad_of):
        mapped_values = torch.func.vmap(function)(logits, *(given[name] for name in names))
        expected = torch.stack([function(*batch) for batch in batches])
        torch.testing.assert_close(mapped_values, expected, rtol=1e-14, atol=1e-16)
    for function in (loss_of, grad_of):
        over_shared_logits = torch.func.vmap(function, in_dims=(None, *[0] * len(names)))
        try:
            mapped_values = over_shared_logits(logits[0], *(given[name] for name in names))
        except RuntimeError as error:
            assert loss != "softmax" and "vmap" in str(error)
            continue
        expected = torch.stack([function(logits[0], *batch[1:]) for batch in batches])
        torch.testing.assert_close(mapped_values, expected, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("loss", LOSSES)
def test_the_returned_gradient_belongs_to_the_caller(loss, reduction):
    """Writing into the gradient torch.autograd.grad returned must not change a second grad call."""
    x, y, w = _data((2, 5, 3, 2), seed=1)
    x.requires_grad_()
    value = class_balanced_loss(x, y, w, loss=loss, reduction=reduction)
    cotangent = torch.ones_like(value)
    (first,) = torch.autograd.grad(value, x, cotangent, retain_graph=True)
    expected = first.clone()
    first.mul_(-7.0).add_(3.0)
    (second,) = torch.autograd.grad(value, x, cotangent)
    torch.testing.assert_close(second, expected, rtol=0, atol=0)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("loss", ["sigmoid", "focal", "softmax_focal"])
def test_a_cotangent_in_another_dtype_scales_the_gradient_in_the_inputs_dtype(loss, reduction):
    """A loss cast before its backward (``loss.double().backward()``, a float16 input's float32 loss summed in
    float64) hands the analytic gradient a cotangent of another dtype: the gradient is the same numbers in the
    input's dtype."""
    x, y, w = _data((6, 5))
    x32 = x.float().requires_grad_()
    options = dict(loss=loss, reduction=reduction, gamma=2.0 if "focal" in loss else 0.0)
    (plain,) = torch.autograd.grad(class_balanced_loss(x32, y, w, **options).sum(), x32)
    (cast,) = torch.autograd.grad(class_balanced_loss(x32, y, w, **options).double().sum(), x32)
    assert cast.dtype == torch.float32 and torch.equal(cast, plain)
    x16 = x.half().requires_grad_()
    (half,) = torch.autograd.grad(class_balanced_loss(x16, y, w, **options).double().sum(), x16)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), plain, rtol=2e-2, atol=1e-3)


@pytest.mark.parametrize("loss", ["sigmoid", "focal", "softmax_focal"])
def test_double_backward_raises(loss):
    """The first derivative is available with create_graph=True (torch.func.grad always asks for it); any
    derivative of it raises instead of treating the analytic gradient as a constant."""
    x, y, _ = _data((4, 3), seed=2)
    x.requires_grad_()
    value = class_balanced_loss(x, y, loss=loss)
    (grad,) = torch.autograd.grad(value, x, create_graph=True)
    torch.testing.assert_close(grad.detach(), _autograd_grad(lambda x: class_balanced_loss(x, y, loss=loss), x))
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(grad.square().sum(), x)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.func.jacrev(torch.func.grad(lambda x: class_balanced_loss(x, y, loss=loss)))(x.detach())


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("multi_label", ["class", "sample"])
@pytest.mark.parametrize("shape", [(6, 4), (2, 4, 3)], ids=str)
def test_multi_hot_sigmoid_has_second_derivatives(shape, multi_label, reduction):
    """Multi-hot sigmoid runs on PyTorch's binary cross-entropy (docs/torch.md): double backward gives the
    Hessian-vector product ``H u``, diagonal with ``H = k_pc sigmoid'(z)``, where ``k_pc`` is the element's weight
    (class weight or position weight, times the reduction's factor), written out here in float64 NumPy."""
    g = torch.Generator().manual_seed(len(shape) + len(multi_label) + len(reduction))
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    t = (torch.rand(shape, generator=g) < 0.4).double()
    w = torch.rand(shape[1], generator=g, dtype=torch.float64) + 0.25
    u = torch.randn(shape, generator=g, dtype=torch.float64)
    xr = x.clone().requires_grad_()
    value = class_balanced_loss(xr, t, w, loss="sigmoid", multi_label=multi_label, reduction=reduction)
    (grad,) = torch.autograd.grad(value, xr, create_graph=True)
    (hvp,) = torch.autograd.grad((grad * u).sum(), xr)

    z, targets = (np.moveaxis(a.numpy(), 1, -1) for a in (x, t))
    weights = w.numpy()  # along the class axis, last here
    if multi_label == "class":
        k = np.broadcast_to(weights, z.shape)
    else:
        positives = targets.sum(-1, keepdims=True)
        mean_weight = (targets * weights).sum(-1, keepdims=True) / np.where(positives > 0, positives, 1)
        k = np.broadcast_to(np.where(positives > 0, mean_weight, 1.0), z.shape)
    if reduction == "mean":
        k = k / (z.size // z.shape[-1])
    sigmoid = 1 / (1 + np.exp(-z))
    expected = np.moveaxis(k * sigmoid * (1 - sigmoid) * np.moveaxis(u.numpy(), 1, -1), -1, 1)
    np.testing.assert_allclose(hvp.numpy(), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "weighted_mean"])
@pytest.mark.parametrize("form", ["hard", "ignore-smooth", "soft"])
@pytest.mark.parametrize("loss", LOSSES)
def test_core_on_torch_tensors_through_torch_autograd_matches_the_oracle(loss, form, reduction):
    """cbloss.class_balanced_loss (the neutral core, not the adapter) computes the value with array-api-compat
    operations on torch tensors; torch autograd differentiates them. Both against the 60-digit oracle."""
    rng = np.random.default_rng(zlib.crc32(f"{loss}-{form}-{reduction}".encode()))
    z = rng.normal(size=(4, 3)) * 3
    if form == "soft":
        y = rng.dirichlet(np.ones(3), size=4)
    else:
        y = rng.integers(0, 3, size=4)
        if form == "ignore-smooth":
            y[1] = -100
    options = dict(loss=loss, reduction=reduction)
    if form == "ignore-smooth":
        options.update(ignore_index=-100, label_smoothing=0.2)
    w = rng.uniform(0.25, 2.0, 3)
    cotangent = rng.uniform(0.5, 1.5, 4 if reduction == "none" else ())
    want = oracle.loss_and_grad(z, y, w, cotangent=cotangent, **options)
    x = torch.tensor(z, requires_grad=True)
    value = cbloss.class_balanced_loss(x, torch.tensor(y), torch.tensor(w), **options)
    assert isinstance(value, torch.Tensor) and value.requires_grad
    (grad,) = torch.autograd.grad(value, x, torch.tensor(cotangent))
    np.testing.assert_allclose(value.detach().numpy(), want.value, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad.numpy(), want.grad, rtol=1e-11, atol=1e-14)
