"""Parity of docs/conventions.md §7: loss="softmax" equals torch.nn.functional.cross_entropy exactly (up to float
rounding).

``reduction="weighted_mean"`` (class indices) or ``"mean"`` (probability targets) equals cross_entropy's
``reduction="mean"`` with any ``weight``, ``ignore_index``, ``label_smoothing`` and spatial dims; ``"sum"`` and
``"none"`` equal theirs. Values and gradients (torch's autograd through cross_entropy against the core's
analytic gradient), in float64, for the core on NumPy (class axis moved last) and on torch tensors (through
array-api-compat, class axis 1 like cross_entropy).
(One deliberate difference, not tested here: with every position ignored, cross_entropy's "mean" is NaN, 0/0,
where docs/conventions.md §7 gives 0.)
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import cbloss

SHAPES = {"NxC": (6, 4), "NxCxd1xd2": (3, 4, 2, 5), "C": (4,)}
TARGETS = ["indices", "indices_ignore", "indices_ignore_in_range", "probabilities"]
REDUCTIONS = ["mean", "sum", "none"]
IGNORE = -100


def _case(shape, target, weighted, seed):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(seed)
    C = shape[0] if len(shape) == 1 else shape[1]
    batch = () if len(shape) == 1 else (shape[0], *shape[2:])
    logits = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    weight = torch.rand(C, generator=g, dtype=torch.float64) * 2 + 0.25 if weighted else None
    ignore_index = None
    if target == "probabilities":
        p = torch.rand(shape, generator=g, dtype=torch.float64)
        labels = p / p.sum(dim=0 if len(shape) == 1 else 1, keepdim=True)
    else:
        labels = torch.randint(0, C, batch, generator=g)
        if target == "indices_ignore":
            ignore_index = IGNORE
        elif target == "indices_ignore_in_range":
            ignore_index = 1  # a real class, ignored
        if ignore_index is not None and labels.ndim:
            flat = labels.view(-1)
            flat[::3] = ignore_index
            flat[1] = 0  # never all ignored
    return logits, labels, weight, ignore_index


def _core(logits, labels, weight, *, on, reduction, label_smoothing, ignore_index):
    """The core's (loss, grad) as float64 torch tensors, on NumPy (class axis last) or on torch tensors."""
    import torch

    options = dict(loss="softmax", reduction=reduction, label_smoothing=label_smoothing, ignore_index=ignore_index)
    if on == "torch":
        return cbloss.class_balanced_loss_and_grad(logits, labels, weight, axis=1 if logits.ndim > 1 else 0, **options)
    axis = 1 if logits.ndim > 1 else 0
    z = np.moveaxis(logits.numpy(), axis, -1)
    y = labels.numpy() if not labels.is_floating_point() else np.moveaxis(labels.numpy(), axis, -1)
    w = None if weight is None else weight.numpy()
    loss, grad = cbloss.class_balanced_loss_and_grad(z, y, w, **options)
    return torch.as_tensor(np.asarray(loss)), torch.as_tensor(np.moveaxis(np.asarray(grad), -1, axis))


@pytest.mark.parametrize("on", ["numpy", "torch"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [True, False], ids=["weight", "noweight"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
def test_softmax_equals_cross_entropy(shape, target, reduction, weighted, label_smoothing, on):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    seed = zlib.crc32(f"{shape}-{target}-{weighted}".encode())
    logits, labels, weight, ignore_index = _case(SHAPES[shape], target, weighted, seed)
    if shape == "C" and ignore_index is not None and int(labels) == ignore_index:
        labels = torch.tensor(0)
    ours = {"mean": "weighted_mean" if target != "probabilities" else "mean"}.get(reduction, reduction)

    z = logits.clone().requires_grad_(True)
    kwargs = {} if ignore_index is None else {"ignore_index": ignore_index}
    want = F.cross_entropy(z, labels, weight=weight, reduction=reduction, label_smoothing=label_smoothing, **kwargs)
    cotangent = torch.rand(want.shape, dtype=torch.float64) + 0.5
    (want_grad,) = torch.autograd.grad(want, z, cotangent)

    loss, grad = _core(
        logits, labels, weight, on=on, reduction=ours, label_smoothing=label_smoothing, ignore_index=ignore_index
    )
    loss = torch.as_tensor(loss, dtype=torch.float64)
    grad = torch.as_tensor(grad, dtype=torch.float64)
    grad = grad * (cotangent.unsqueeze(1 if cotangent.ndim else 0) if reduction == "none" else cotangent)
    if reduction == "none" and ignore_index is not None:
        assert torch.all(loss[labels == ignore_index] == 0)
    # float64 rounding: both sides are sums of a few terms of size max(1, |z|), each rounded once
    atol = 1e-14 * max(1.0, float(logits.abs().max()))
    torch.testing.assert_close(loss, want.detach(), rtol=1e-12, atol=atol)
    torch.testing.assert_close(grad, want_grad, rtol=1e-12, atol=atol)
