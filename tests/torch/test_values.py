"""The adapter against the NumPy core (values and gradients, every option) and against PyTorch's own
F.cross_entropy where docs/conventions.md §7 requires parity; gradcheck in float64; dtypes; double backward."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cbloss
from cbloss.adapters.torch import ClassBalancedLoss, class_balanced_loss

LOSSES = ["softmax", "sigmoid", "focal", "softmax_focal"]
REDUCTIONS = ["none", "sum", "mean", "weighted_mean"]
SHAPES = [(6, 5), (3, 5, 4, 2), (5,)]


def _inputs(shape, soft, seed=0, ignore=None):
    rng = np.random.default_rng(seed)
    num_classes = shape[1] if len(shape) > 1 else shape[0]
    z = rng.normal(size=shape) * 3
    if soft:
        t = rng.dirichlet(np.ones(num_classes), size=int(np.prod(shape)) // num_classes)
        axis = 1 if len(shape) > 1 else 0
        lab_shape = (shape[0], *shape[2:], num_classes) if len(shape) > 1 else (num_classes,)
        y = np.moveaxis(t.reshape(lab_shape), -1, axis)
    else:
        lab_shape = (shape[0], *shape[2:]) if len(shape) > 1 else ()
        y = rng.integers(0, num_classes, size=lab_shape)
        if ignore is not None and y.ndim:
            y.reshape(-1)[::3] = ignore
    w = rng.uniform(0.2, 2.0, num_classes)
    return z, y, w


CASES = [
    dict(loss=loss, reduction=red, soft=soft, label_smoothing=eps, ignore_index=ign)
    for loss, red, soft, (eps, ign) in itertools.product(
        LOSSES, REDUCTIONS, [False, True], [(0.0, None), (0.1, None), (0.0, -100), (0.2, 4)]
    )
    if not (soft and ign is not None)
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_matches_numpy_core(case, shape):
    case = dict(case)
    soft = case.pop("soft")
    z, y, w = _inputs(shape, soft, ignore=case["ignore_index"])
    axis = 1 if len(shape) > 1 else 0
    expected, expected_grad = cbloss.class_balanced_loss_and_grad(z, y, w, axis=axis, **case)
    cotangent = np.random.default_rng(1).normal(size=np.shape(expected))
    x = torch.tensor(z, requires_grad=True)
    loss = class_balanced_loss(x, torch.tensor(y), torch.tensor(w), **case)
    loss.backward(torch.tensor(cotangent))
    chained = expected_grad * (np.expand_dims(cotangent, axis) if case["reduction"] == "none" else cotangent)
    np.testing.assert_allclose(loss.detach().numpy(), expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(x.grad.numpy(), chained, rtol=1e-11, atol=1e-15)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize(
    "form",
    ["hard-mean", "hard-none", "ignore-smooth-weighted", "soft-sum", "dense-weighted", "unbatched"],
)
def test_gradcheck_float64(loss, form):
    shape = {"dense-weighted": (2, 4, 3), "unbatched": (4,)}.get(form, (5, 4))
    soft = form.startswith("soft")
    z, y, w = _inputs(shape, soft, seed=3, ignore=-1 if form.startswith("ignore") else None)
    options = {
        "hard-mean": dict(reduction="mean"),
        "hard-none": dict(reduction="none"),
        "ignore-smooth-weighted": dict(reduction="weighted_mean", ignore_index=-1, label_smoothing=0.1),
        "soft-sum": dict(reduction="sum"),
        "dense-weighted": dict(reduction="weighted_mean"),
        "unbatched": dict(reduction="mean"),
    }[form]
    x = torch.tensor(z, requires_grad=True)
    target, weight = torch.tensor(y), torch.tensor(w)
    assert torch.autograd.gradcheck(
        lambda x: class_balanced_loss(x, target, weight, loss=loss, gamma=1.5 if "focal" in loss else None, **options),
        (x,),
        eps=1e-6,
        atol=1e-7,
        rtol=1e-6,
    )


@pytest.mark.parametrize("shape", [(6, 5), (2, 5, 3, 4)], ids=str)
@pytest.mark.parametrize("form", ["weighted", "smooth-ignore", "probs", "probs-smooth"])
def test_softmax_equals_f_cross_entropy(shape, form):
    """docs/conventions.md §7 parity with PyTorch's own implementation (an independent reference)."""
    z, y, w = _inputs(shape, form.startswith("probs"), seed=5, ignore=-100 if "ignore" in form else None)
    eps = 0.15 if "smooth" in form else 0.0
    kwargs = dict(label_smoothing=eps)
    ours_kwargs = dict(kwargs)
    if "ignore" in form:
        kwargs["ignore_index"] = ours_kwargs["ignore_index"] = -100
    reduction = "mean" if form.startswith("probs") else "weighted_mean"
    for theirs_red, ours_red in [("mean", reduction), ("sum", "sum"), ("none", "none")]:
        a = torch.tensor(z, requires_grad=True)
        b = torch.tensor(z, requires_grad=True)
        target, weight = torch.tensor(y), torch.tensor(w)
        expected = F.cross_entropy(a, target, weight=weight, reduction=theirs_red, **kwargs)
        got = class_balanced_loss(b, target, weight, reduction=ours_red, **ours_kwargs)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)
        expected.sum().backward()
        got.sum().backward()
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("loss", LOSSES)
def test_low_precision_computes_in_float32(dtype, loss):
    z, y, w = _inputs((8, 6, 3), False, seed=7)
    x = torch.tensor(z, dtype=dtype, requires_grad=True)
    ref = x.detach().float().requires_grad_()
    target, weight = torch.tensor(y), torch.tensor(w)
    got = class_balanced_loss(x, target, weight, loss=loss)
    expected = class_balanced_loss(ref, target, weight, loss=loss)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    got.backward()
    expected.backward()
    assert x.grad.dtype == dtype
    torch.testing.assert_close(x.grad, ref.grad.to(dtype))


def test_autocast_cpu_bfloat16():
    torch.manual_seed(0)
    model = torch.nn.Linear(7, 5)
    x = torch.randn(9, 7)
    target = torch.randint(0, 5, (9,))
    weight = torch.tensor([1.0, 2.0, 0.5, 1.5, 3.0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
        assert logits.dtype == torch.bfloat16
        loss = class_balanced_loss(logits, target, weight, loss="focal")
    assert loss.dtype == torch.float32
    expected = class_balanced_loss(logits.detach().float(), target, weight, loss="focal")
    torch.testing.assert_close(loss.detach(), expected)
    loss.backward()
    assert model.weight.grad is not None and torch.isfinite(model.weight.grad).all()


AUTOCAST_CASES = {
    "soft-weighted_mean": dict(target="soft", loss="softmax", reduction="weighted_mean"),
    "soft-softmax_focal": dict(target="soft", loss="softmax_focal"),
    "smooth-focal": dict(target="hard", loss="focal", label_smoothing=0.1),
    "smooth-softmax_focal": dict(target="hard", loss="softmax_focal", label_smoothing=0.1),
    "class-focal": dict(target="multi-hot", loss="focal", multi_label="class"),
    "sample-sigmoid": dict(target="multi-hot", loss="sigmoid", multi_label="sample"),
    "sample-focal": dict(target="multi-hot", loss="focal", multi_label="sample", reduction="sum"),
}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("case", AUTOCAST_CASES.values(), ids=AUTOCAST_CASES.keys())
def test_autocast_computes_in_float32(case, dtype):
    """Under torch.autocast the loss of low-precision logits is what it is outside autocast: computed in float32
    (docs/conventions.md §9), the class sums that are matrix products in the core included; autocast would run
    those in float16/bfloat16 (a relative error of 1e-3, and inf for finite float16 logits near 1000)."""
    case = dict(case)
    kind = case.pop("target")
    generator = torch.Generator().manual_seed(4)
    z = torch.randn(16, 12, generator=generator) * 3
    z[0] = 1000.0  # large but finite in float16
    targets = {
        "soft": torch.softmax(torch.randn(16, 12, generator=generator), dim=1),
        "hard": torch.randint(0, 12, (16,), generator=generator),
        "multi-hot": (torch.rand(16, 12, generator=generator) < 0.3).float(),
    }
    weight = torch.rand(12, generator=generator, dtype=torch.float64) + 0.1
    x = z.to(dtype).requires_grad_()
    expected = class_balanced_loss(x, targets[kind], weight, **case)
    (expected_grad,) = torch.autograd.grad(expected, x)
    with torch.autocast("cpu", dtype=dtype):
        loss = class_balanced_loss(x, targets[kind], weight, **case)
    (grad,) = torch.autograd.grad(loss, x)
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, expected, rtol=0, atol=0)
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=0)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [True, False], ids=["weighted", "unweighted"])
@pytest.mark.parametrize("with_sample_weight", [False, True], ids=["", "sample_weight"])
def test_unchecked_softmax_matches_the_core_with_second_derivatives(
    shape, reduction, label_smoothing, weighted, with_sample_weight
):
    """validate=False reads no label, so CB softmax cannot hand F.cross_entropy an ignore value that no label
    equals: it runs on log_softmax and gather, with F.cross_entropy's smoothing term added. Its value and gradient
    are the core's, and its second derivatives are those of the checked path (F.cross_entropy's)."""
    z, y, w = _inputs(shape, False, seed=11)
    positions = np.shape(y)
    sample_weight = np.random.default_rng(12).uniform(0.0, 2.0, positions) if with_sample_weight else None
    w = w if weighted else None
    options = dict(loss="softmax", reduction=reduction, label_smoothing=label_smoothing)
    axis = 1 if len(shape) > 1 else 0
    expected, expected_grad = cbloss.class_balanced_loss_and_grad(
        z, y, w, axis=axis, sample_weight=sample_weight, **options
    )
    v = torch.tensor(np.random.default_rng(13).normal(size=shape))
    to_torch = lambda a: None if a is None else torch.tensor(a)  # noqa: E731
    hessian_vector_products = []
    for validate in (False, True):
        x = torch.tensor(z, requires_grad=True)
        loss = class_balanced_loss(
            x, torch.tensor(y), to_torch(w), sample_weight=to_torch(sample_weight), validate=validate, **options
        )
        (grad,) = torch.autograd.grad(loss.sum(), x, create_graph=True)
        if not validate:
            np.testing.assert_allclose(loss.detach().numpy(), expected, rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(grad.detach().numpy(), expected_grad, rtol=1e-11, atol=1e-15)
        hessian_vector_products.append(torch.autograd.grad((grad * v).sum(), x)[0])
    torch.testing.assert_close(*hessian_vector_products, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("ignore_index", [None, -1])
@pytest.mark.parametrize("reduction", ["mean", "weighted_mean", "none", "sum"])
def test_softmax_second_derivatives(reduction, ignore_index):
    """CB softmax runs on PyTorch's own kernels (log_softmax and gather without ignore_index, F.cross_entropy
    with it), so second derivatives exist: a Hessian-vector product equals the analytic one, position by
    position c_i * (p * v - p * (p . v)) with p = softmax(z_i) and c_i = w_{y_i} times the reduction's factor
    (written here from the definition, in NumPy)."""
    rng = np.random.default_rng(5)
    z = rng.normal(size=(6, 4)) * 2
    y = rng.integers(0, 4, size=6)
    w = rng.uniform(0.2, 2.0, 4)
    v = rng.normal(size=(6, 4))
    x = torch.tensor(z, requires_grad=True)
    options = {} if ignore_index is None else dict(ignore_index=ignore_index)
    loss = class_balanced_loss(x, torch.tensor(y), torch.tensor(w), reduction=reduction, **options)
    (grad,) = torch.autograd.grad(loss.sum(), x, create_graph=True)
    (hvp,) = torch.autograd.grad((grad * torch.tensor(v)).sum(), x)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    factor = {"mean": 1 / len(y), "weighted_mean": 1 / w[y].sum(), "none": 1.0, "sum": 1.0}[reduction]
    expected = (w[y] * factor)[:, None] * (p * v - p * np.sum(p * v, axis=1, keepdims=True))
    np.testing.assert_allclose(hvp.numpy(), expected, rtol=1e-12, atol=1e-15)


def test_no_grad_path_gives_the_same_value():
    z, y, w = _inputs((5, 4), False, seed=9)
    x = torch.tensor(z, requires_grad=True)
    with_grad = class_balanced_loss(x, torch.tensor(y), torch.tensor(w), loss="focal")
    with torch.no_grad():
        without = class_balanced_loss(x, torch.tensor(y), torch.tensor(w), loss="focal")
    assert not without.requires_grad
    torch.testing.assert_close(without, with_grad.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("loss", LOSSES)
def test_retain_graph_backward_twice(loss):
    x = torch.randn(4, 3, requires_grad=True)
    loss = class_balanced_loss(x, torch.tensor([0, 1, 2, 0]), loss=loss)
    loss.backward(retain_graph=True)
    first = x.grad.clone()
    loss.backward(retain_graph=True)  # accumulating into x.grad must not change what the graph keeps
    loss.backward()
    torch.testing.assert_close(x.grad, 3 * first)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_empty_batch(loss, reduction):
    """No positions: "mean"/"weighted_mean" are 0 by the zero-denominator rule of docs/conventions.md §7 (the
    reduction factor the shapes fix is 0 for an empty batch), "sum" is 0, "none" is empty; the gradient is an
    empty (0, C) tensor."""
    x = torch.zeros(0, 5, dtype=torch.float64, requires_grad=True)
    y = torch.zeros(0, dtype=torch.int64)
    for criterion in (
        lambda: class_balanced_loss(x, y, torch.ones(5), loss=loss, reduction=reduction),
        lambda: ClassBalancedLoss([5, 4, 3, 2, 1], 0.9, loss=loss, reduction=reduction)(x, y),
    ):
        x.grad = None
        value = criterion()
        value.sum().backward()
        if reduction == "none":
            assert value.shape == (0,)
        else:
            assert value.item() == 0.0 and not torch.isnan(value)
        assert x.grad.shape == (0, 5)


FORMS = {
    "hard": dict(),
    "smooth": dict(label_smoothing=0.1),
    "ignore-smooth-weighted": dict(ignore_index=-1, label_smoothing=0.1, reduction="weighted_mean"),
    "none": dict(reduction="none"),
    "soft": dict(),
}


@pytest.mark.parametrize("shape", [(6, 5), (3, 5, 4, 2)], ids=str)
@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("loss", LOSSES)
def test_arguments_are_left_bitwise_unchanged(loss, form, shape):
    """docs/conventions.md §14: input, target and weight are read, never written, forward and backward."""
    z, y, w = _inputs(shape, form == "soft", seed=11, ignore=-1 if "ignore" in form else None)
    x = torch.tensor(z, dtype=torch.float32, requires_grad=True)
    target = torch.tensor(y, dtype=torch.float32) if form == "soft" else torch.tensor(y)
    weight = torch.tensor(w)
    saved = [t.detach().clone() for t in (x, target, weight)]
    value = class_balanced_loss(x, target, weight, loss=loss, **FORMS[form])
    value.sum().backward()
    with torch.no_grad():
        class_balanced_loss(x, target, weight, loss=loss, **FORMS[form])
    for tensor, before in zip((x, target, weight), saved, strict=True):
        assert torch.equal(tensor.detach(), before)


@pytest.mark.parametrize("requires_grad", [True, False])
@pytest.mark.parametrize("options", [dict(), dict(label_smoothing=0.1), dict(reduction="none")], ids=str)
@pytest.mark.parametrize("bad", [-100, -(2**63)])
@pytest.mark.parametrize("loss", LOSSES)
def test_a_label_outside_the_classes_is_never_ignored_silently(loss, bad, options, requires_grad):
    """docs/conventions.md §6.4: with ignore_index=None no label value is ignored, not PyTorch's -100, not the
    smallest int64. validate=True raises the core's ValueError; validate=False raises from the kernels (on the
    CPU) or gives NaN, never a finite loss that leaves the position out."""
    x = torch.randn(3, 4, requires_grad=requires_grad)
    target = torch.tensor([0, bad, 3])
    with pytest.raises(ValueError, match=rf"^target: class indices must be in \[0, 4\), got \[{bad}\]"):
        class_balanced_loss(x, target, loss=loss, **options)
    try:
        value = class_balanced_loss(x, target, loss=loss, validate=False, **options)
    except (RuntimeError, IndexError):
        return
    assert torch.isnan(value.reshape(-1)[1 if options.get("reduction") == "none" else 0])


@pytest.mark.parametrize("loss", LOSSES)
def test_a_weight_that_requires_grad_is_a_constant(loss):
    """docs/conventions.md §10: a learnable weight vector is accepted and receives no gradient."""
    z, y, w = _inputs((6, 5), False, seed=13)
    weight = torch.tensor(w, requires_grad=True)
    x = torch.tensor(z, requires_grad=True)
    value = class_balanced_loss(x, torch.tensor(y), weight, loss=loss, reduction="weighted_mean")
    value.backward()
    assert weight.grad is None
    expected, expected_grad = cbloss.class_balanced_loss_and_grad(z, y, w, axis=1, loss=loss, reduction="weighted_mean")
    np.testing.assert_allclose(value.item(), expected, rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), expected_grad, rtol=1e-11, atol=1e-15)
    if loss == "softmax":
        b = torch.tensor(z, requires_grad=True)
        F.cross_entropy(b, torch.tensor(y), weight=weight.detach()).backward()
        torch.testing.assert_close(x.grad, b.grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss", LOSSES)
def test_ignore_index_has_no_effect_on_probability_targets(loss, reduction):
    """docs/conventions.md §6.4, as in PyTorch: with probability targets ignore_index changes nothing."""
    z, y, w = _inputs((3, 5, 4), True, seed=17)
    results = []
    for options in (dict(), dict(ignore_index=-100), dict(ignore_index=0)):
        x = torch.tensor(z, requires_grad=True)
        value = class_balanced_loss(x, torch.tensor(y), torch.tensor(w), loss=loss, reduction=reduction, **options)
        value.sum().backward()
        results.append((value.detach(), x.grad))
    for value, grad in results[1:]:
        torch.testing.assert_close(value, results[0][0], rtol=0, atol=0)
        torch.testing.assert_close(grad, results[0][1], rtol=0, atol=0)
    if loss == "softmax" and reduction != "weighted_mean":
        theirs = F.cross_entropy(torch.tensor(z), torch.tensor(y), weight=torch.tensor(w), reduction=reduction)
        torch.testing.assert_close(results[0][0], theirs, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.bool, torch.int64, torch.float64])
@pytest.mark.parametrize("shape", [(6, 5), (3, 5, 4, 2), (5,)], ids=str)
def test_multi_hot_class_weighting_equals_bce_with_logits(shape, dtype):
    """docs/conventions.md §6.5: multi_label="class" with the sigmoid loss and 0/1 targets (bool, integer or
    float, class dim 1) is F.binary_cross_entropy_with_logits(weight=w) summed over the classes; its gradient
    is autograd's through that function."""
    rng = np.random.default_rng(19)
    z = rng.normal(size=shape) * 3
    t = rng.integers(0, 2, size=shape)
    w = rng.uniform(0.2, 2.0, shape[1] if len(shape) > 1 else shape[0])
    class_dim = 1 if len(shape) > 1 else 0
    w_b = torch.tensor(w).view(-1, *(1,) * (len(shape) - class_dim - 1))
    for reduction in ("none", "sum", "mean"):
        a, b = torch.tensor(z, requires_grad=True), torch.tensor(z, requires_grad=True)
        got = class_balanced_loss(
            a, torch.tensor(t).to(dtype), torch.tensor(w), loss="sigmoid", multi_label="class", reduction=reduction
        )
        per_position = F.binary_cross_entropy_with_logits(
            b, torch.tensor(t, dtype=torch.float64), weight=w_b, reduction="none"
        ).sum(class_dim)
        expected = {"none": per_position, "sum": per_position.sum(), "mean": per_position.mean()}[reduction]
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)
        got.sum().backward()
        expected.sum().backward()
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("loss", ["sigmoid", "focal"])
@pytest.mark.parametrize("multi_label", ["class", "sample"])
def test_multi_hot_targets_match_the_core_and_are_checked(loss, multi_label):
    rng = np.random.default_rng(23)
    z = rng.normal(size=(3, 5, 4)) * 3
    t = rng.uniform(size=(3, 5, 4)).round(2)
    w = rng.uniform(0.2, 2.0, 5)
    options = dict(loss=loss, multi_label=multi_label, label_smoothing=0.1)
    expected, expected_grad = cbloss.class_balanced_loss_and_grad(z, t, w, axis=1, **options)
    x = torch.tensor(z, requires_grad=True)
    got = class_balanced_loss(x, torch.tensor(t), torch.tensor(w), **options)
    got.backward()
    np.testing.assert_allclose(got.item(), expected, rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), expected_grad, rtol=1e-11, atol=1e-15)
    with pytest.raises(ValueError, match=r"^target: multi-hot targets must be in \[0, 1\]"):
        class_balanced_loss(x, torch.tensor(t) + 1.0, torch.tensor(w), **options)
    with pytest.raises(ValueError, match=r"^target: multi-hot targets must have the input's shape"):
        class_balanced_loss(x, torch.tensor(t[:, 0]), torch.tensor(w), **options)


@pytest.mark.parametrize("dtype", [torch.uint16, torch.uint32, torch.uint64])
@pytest.mark.parametrize("loss", ["sigmoid", "focal"])
def test_wide_unsigned_weights_and_multi_hot_targets_are_read_as_numbers(dtype, loss):
    """PyTorch has no comparisons or reductions for uint16/32/64: weights and multi-hot targets in them are
    checked and computed like the same numbers in float64, and a target of 2 is still named."""
    rng = np.random.default_rng(31)
    z = torch.tensor(rng.normal(size=(6, 4)) * 3)
    t = rng.uniform(size=(6, 4)) < 0.4
    w = np.array([1, 3, 2, 7])
    options = dict(loss=loss, multi_label="class", reduction="sum")
    expected = class_balanced_loss(z, torch.tensor(t, dtype=torch.float64), torch.tensor(w * 1.0), **options)
    got = class_balanced_loss(z, torch.tensor(t).to(dtype), torch.tensor(w).to(dtype), **options)
    torch.testing.assert_close(got, expected, rtol=0.0, atol=0.0)
    with pytest.raises(ValueError, match=r"^target: multi-hot targets must be in \[0, 1\]"):
        class_balanced_loss(z, torch.tensor(2 * t).to(dtype), **options)
    single = class_balanced_loss(z, torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor(w).to(dtype), loss=loss)
    torch.testing.assert_close(single, class_balanced_loss(z, torch.tensor([0, 1, 2, 3, 0, 1]), w.tolist(), loss=loss))
    s = np.array([1, 0, 2, 5, 1, 3])  # sample weights too
    got = class_balanced_loss(z, torch.tensor(t).to(dtype), sample_weight=torch.tensor(s).to(dtype), **options)
    want = class_balanced_loss(z, torch.tensor(t).to(dtype), sample_weight=s.tolist(), **options)
    torch.testing.assert_close(got, want, rtol=0.0, atol=0.0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("multi_label", ["class", "sample"])
def test_multi_hot_sigmoid_rounds_like_pytorchs_fused_kernel(dtype, multi_label):
    """CB sigmoid on multi-hot targets runs on F.binary_cross_entropy_with_logits (docs/torch.md). At confident,
    correct elements its ``(1 - t) z - log sigmoid(z)`` and ``sigmoid(z) - t`` cancel: an element's value is within
    an ulp of ``max(1, |z|)`` and its gradient within an ulp of 1 of the exact ones (the conformance suite's slack,
    docs/conventions.md §15), where the core keeps their relative digits."""
    from tests import oracle

    logits = np.array([[16.0, -17.0, 12.5, -9.0], [-25.0, 18.0, -11.0, 10.0]])
    targets = np.array([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]])
    options = dict(loss="sigmoid", multi_label=multi_label, reduction="none")
    want = oracle.loss_and_grad(logits, targets, **options, cotangent=np.ones(2))
    assert np.max(want.value) < 1e-3  # the regime this test is about
    x = torch.tensor(logits, dtype=dtype, requires_grad=True)
    value = class_balanced_loss(x, torch.tensor(targets, dtype=dtype), **options)
    value.sum().backward()
    eps = torch.finfo(dtype).eps
    elements = logits.shape[1]
    np.testing.assert_allclose(value.detach().double().numpy(), want.value, rtol=0, atol=eps * 25.0 * elements)
    np.testing.assert_allclose(x.grad.double().numpy(), want.grad, rtol=0, atol=eps)
    core_value, core_grad = cbloss.class_balanced_loss_and_grad(logits, targets, **options)
    np.testing.assert_allclose(core_value, want.value, rtol=1e-12, atol=0)
    np.testing.assert_allclose(core_grad, want.grad, rtol=1e-12, atol=0)


@pytest.mark.parametrize("loss", LOSSES)
def test_nan_logits_at_an_ignored_position(loss):
    """A NaN logit at an ignored position makes that position's gradient NaN (as PyTorch's own F.cross_entropy
    does) and its value NaN, except for CB softmax, whose fused kernel leaves the ignored value out: 0, as
    F.cross_entropy gives (docs/conventions.md §6.4, docs/torch.md)."""
    x = torch.tensor([[1.0, 2.0, 0.5], [float("nan"), 0.0, 0.0], [0.0, -1.0, 3.0]], requires_grad=True)
    y = torch.tensor([0, -100, 2])
    values = class_balanced_loss(x, y, ignore_index=-100, loss=loss, reduction="none")
    (grad,) = torch.autograd.grad(values.sum(), x)
    assert torch.isnan(grad[1]).any() and torch.isfinite(grad[[0, 2]]).all()
    assert torch.isfinite(values[[0, 2]]).all()
    if loss == "softmax":
        assert values[1].item() == 0.0
        native = F.cross_entropy(x, y, reduction="none")
        torch.testing.assert_close(values, native)
    else:
        assert torch.isnan(values[1])
