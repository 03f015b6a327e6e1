"""docs/migration.md, PyTorch peers: each peer's published loss re-implemented here from its formula (the port
``CB_loss``, ``balanced-loss``, ``torchvision.ops.sigmoid_focal_loss``, PyPI's ``cbloss``), with the same float32
weights and the same numerically relevant expressions, against cbloss.adapters.torch; where they differ, what
the difference is."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cbloss.adapters.torch import ClassBalancedLoss, class_balanced_loss

SHAPES = [(1, 2), (16, 5), (64, 10)]
DTYPES = [torch.float32, torch.float64]
# The same loss evaluated two ways: a few ulps of float32, many fewer of float64.
RTOL = {torch.float32: 1e-5, torch.float64: 1e-12}
# Against a peer's class weights, which it rounds to float32 whatever the logits' dtype.
RTOL_PEER_WEIGHTS = {torch.float32: 1e-5, torch.float64: 1e-6}


def _case(num_samples, num_classes, dtype, seed=0):
    g = torch.Generator().manual_seed(seed * 1000 + num_samples * 10 + num_classes)
    logits = (torch.randn(num_samples, num_classes, generator=g, dtype=torch.float64) * 3).to(dtype)
    labels = torch.randint(0, num_classes, (num_samples,), generator=g)
    counts = np.floor(1000 * 0.02 ** (np.arange(num_classes) / (num_classes - 1))).astype(int).tolist()
    return logits, labels, counts


def _peer_class_weights(samples_per_class, beta, safe=False):
    """(C,) float32 weights as every peer computes them: the naive float64 formula, scaled to sum to the number
    of classes (with ``safe``, balanced-loss's exclusion of empty classes), then cast to float32."""
    one_minus_power = 1.0 - np.power(beta, np.asarray(samples_per_class, dtype=np.float64))
    num_classes = one_minus_power.size
    if safe:
        num_classes = np.count_nonzero(one_minus_power)
        one_minus_power[one_minus_power == 0] = np.inf
    with np.errstate(divide="ignore", invalid="ignore"):  # empty classes without ``safe``: inf, then NaN
        raw = (1.0 - beta) / one_minus_power
        return torch.tensor(raw / raw.sum() * num_classes).float()


def _tiled(class_weights, one_hot):
    """Each sample's weight w_y repeated over its C columns, the (N, C) tensor the ports build."""
    return (class_weights[None, :] * one_hot).sum(dim=1, keepdim=True).expand_as(one_hot)


def _port_focal(one_hot, logits, alpha, gamma):
    """The ports' sigmoid focal loss: elementwise BCE times exp(-gamma t x - gamma log(1 + exp(-x))), weighted,
    summed and divided by the number of positive labels."""
    elements = F.binary_cross_entropy_with_logits(logits, one_hot, reduction="none")
    if gamma != 0.0:
        elements = elements * torch.exp(-gamma * one_hot * logits - gamma * torch.log(1 + torch.exp(-logits)))
    if alpha is not None:
        elements = alpha * elements
    return elements.sum() / one_hot.sum()


def port_cb_loss(labels, logits, samples_per_cls, loss_type, beta, gamma, weight_keyword="weights"):
    """vandit15's ``CB_loss`` as published; ``weight_keyword="weight"`` is the fix its pull requests propose."""
    one_hot = F.one_hot(labels, logits.shape[1]).float()
    per_sample = _tiled(_peer_class_weights(samples_per_cls, beta), one_hot)
    if loss_type == "focal":
        return _port_focal(one_hot, logits, per_sample, gamma)
    if loss_type == "sigmoid":
        return F.binary_cross_entropy_with_logits(input=logits, target=one_hot, **{weight_keyword: per_sample})
    return F.binary_cross_entropy(input=logits.softmax(dim=1), target=one_hot, weight=per_sample)


# --------------------------------------------------------------------------------------------------------------
# The port CB_loss


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0])
def test_port_focal_is_ours_with_reduction_mean(shape, dtype, gamma):
    logits, labels, counts = _case(*shape, dtype)
    theirs = port_cb_loss(labels, logits, counts, "focal", 0.999, gamma)
    ours = ClassBalancedLoss(counts, 0.999, loss="focal", gamma=gamma)(logits, labels)
    assert ours.dtype == dtype
    torch.testing.assert_close(ours, theirs.to(dtype), rtol=RTOL_PEER_WEIGHTS[dtype], atol=0)


def test_port_sigmoid_as_published_raises_type_error():
    logits, labels, counts = _case(16, 5, torch.float32)
    with pytest.raises(TypeError, match="unexpected keyword argument 'weights'"):
        port_cb_loss(labels, logits, counts, "sigmoid", 0.999, 0.0)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_port_sigmoid_fixed_is_ours_over_num_classes(shape, dtype):
    logits, labels, counts = _case(*shape, dtype)
    theirs = port_cb_loss(labels, logits, counts, "sigmoid", 0.9999, 0.0, weight_keyword="weight")
    ours = ClassBalancedLoss(counts, 0.9999, loss="sigmoid")(logits, labels)
    torch.testing.assert_close(ours / shape[1], theirs.to(dtype), rtol=RTOL_PEER_WEIGHTS[dtype], atol=0)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_port_softmax_is_ours_plus_a_term_on_the_other_classes(shape):
    # float32 only: F.binary_cross_entropy rejects its float32 weights next to float64 probabilities
    logits, labels, counts = _case(*shape, torch.float32)
    theirs = port_cb_loss(labels, logits, counts, "softmax", 0.999, 0.0)
    criterion = ClassBalancedLoss(counts, 0.999, loss="softmax")
    ours = criterion(logits.double(), labels)
    # BCE on p = softmax(z): -log p_y (our loss) plus -sum_{c != y} log(1 - p_c), both times w_y, over N * C
    others = torch.log1p(-logits.double().softmax(dim=1)).scatter(1, labels[:, None], 0.0).sum(dim=1)
    extra = (criterion.weight[labels] * -others).mean()
    torch.testing.assert_close(((ours + extra) / shape[1]).float(), theirs, rtol=RTOL[torch.float32], atol=0)
    assert extra > 0.05 * ours  # a different loss, not a rounding difference
    with pytest.raises(RuntimeError, match="dtype"):
        port_cb_loss(labels, logits.double(), counts, "softmax", 0.999, 0.0)


# The largest float32 logit whose exp(-x) overflows, and the next one up.
FLOAT32_OVERFLOWS = float(np.float32(-88.72284))
FLOAT32_LAST_FINITE = float(np.float32(-88.72283))


@pytest.mark.parametrize("label_logit", [True, False], ids=["label logit", "other logit"])
def test_port_focal_overflow_threshold_in_float32(label_logit):
    counts, gamma = [500, 50, 5], 2.0
    labels = torch.tensor([0 if label_logit else 1])
    assert torch.isfinite(torch.exp(-torch.tensor(FLOAT32_LAST_FINITE)))
    assert torch.isinf(torch.exp(-torch.tensor(FLOAT32_OVERFLOWS)))

    def theirs_and_ours(x):
        results = []
        for loss_fn in (
            lambda z: port_cb_loss(labels, z, counts, "focal", 0.99, gamma),
            lambda z: ClassBalancedLoss(counts, 0.99, loss="focal", gamma=gamma)(z, labels),
        ):
            logits = torch.tensor([[x, 0.5, -1.0]], requires_grad=True)
            loss = loss_fn(logits)
            loss.backward()
            results.append((loss.detach(), logits.grad))
        return results

    (theirs, their_grad), (ours, our_grad) = theirs_and_ours(FLOAT32_LAST_FINITE)
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=0)
    torch.testing.assert_close(their_grad, our_grad, rtol=1e-5, atol=1e-7)

    (theirs, their_grad), (ours, our_grad) = theirs_and_ours(FLOAT32_OVERFLOWS)
    assert torch.isnan(their_grad[0, 0]) and torch.isfinite(their_grad[0, 1:]).all()
    assert torch.isfinite(theirs)
    if label_logit:  # the label's term, about w_y * 88.7, is gone from their loss
        assert theirs < 0.1 * ours
    else:  # another class's logit: that term is about 0 either way, only the gradient breaks
        torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=0)
    assert torch.isfinite(our_grad).all()
    float64 = ClassBalancedLoss(counts, 0.99, loss="focal", gamma=gamma)(
        torch.tensor([[FLOAT32_OVERFLOWS, 0.5, -1.0]], dtype=torch.float64), labels
    )
    torch.testing.assert_close(ours, float64.float(), rtol=1e-6, atol=0)


# --------------------------------------------------------------------------------------------------------------
# balanced-loss


def balanced_loss(
    logits, labels, loss_type, beta=0.999, fl_gamma=2, samples_per_class=None, balanced=False, safe=False
):
    """balanced-loss's ``Loss(...)(logits, labels)``: one-hot float targets; (C,) weights for cross_entropy, the
    tiled (N, C) ones for the others."""
    one_hot = F.one_hot(labels, logits.shape[1]).float()
    weights = None
    if balanced:
        weights = _peer_class_weights(samples_per_class, beta, safe=safe)
        if loss_type != "cross_entropy":
            weights = _tiled(weights, one_hot)
    if loss_type == "focal_loss":
        return _port_focal(one_hot, logits, weights, fl_gamma)
    if loss_type == "cross_entropy":
        return F.cross_entropy(logits, one_hot, weight=weights)
    if loss_type == "binary_cross_entropy":
        return F.binary_cross_entropy_with_logits(logits, one_hot, weight=weights)
    return F.binary_cross_entropy(logits.softmax(dim=1), one_hot, weight=weights)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("balanced", [True, False], ids=["class_balanced", "plain"])
def test_balanced_loss_types_map_to_ours(shape, dtype, balanced):
    logits, labels, counts = _case(*shape, dtype, seed=1)

    def ours(**options):
        if balanced:
            return ClassBalancedLoss(counts, 0.99, **options)(logits, labels)
        return ClassBalancedLoss.from_weights(None, **options)(logits, labels)

    def theirs(loss_type, **kwargs):
        return balanced_loss(logits, labels, loss_type, 0.99, samples_per_class=counts, balanced=balanced, **kwargs)

    rtol = RTOL_PEER_WEIGHTS[dtype]
    torch.testing.assert_close(ours(loss="softmax"), theirs("cross_entropy").to(dtype), rtol=rtol, atol=0)
    for gamma in (0.5, 2.0):
        torch.testing.assert_close(
            ours(loss="focal", gamma=gamma), theirs("focal_loss", fl_gamma=gamma).to(dtype), rtol=rtol, atol=0
        )
    torch.testing.assert_close(
        ours(loss="sigmoid") / shape[1], theirs("binary_cross_entropy").to(dtype), rtol=rtol, atol=0
    )


def test_balanced_loss_cross_entropy_is_mean_not_weighted_mean():
    logits, labels, counts = _case(64, 10, torch.float64, seed=2)
    theirs = balanced_loss(logits, labels, "cross_entropy", 0.999, samples_per_class=counts, balanced=True)
    mean = ClassBalancedLoss(counts, 0.999)(logits, labels)
    weighted_mean = ClassBalancedLoss(counts, 0.999, reduction="weighted_mean")(logits, labels)
    torch.testing.assert_close(mean, theirs, rtol=1e-6, atol=0)
    assert abs(weighted_mean - theirs) > 1e-3 * theirs  # far beyond the rounding of the first comparison


@pytest.mark.parametrize("counts", [[400, 0, 30, 7, 0], [0, 120, 35, 9, 2]], ids=str)
@pytest.mark.parametrize("loss_type", ["cross_entropy", "focal_loss", "binary_cross_entropy"])
def test_balanced_loss_safe_is_zero_count_zero(counts, loss_type):
    logits, _, _ = _case(32, 5, torch.float64, seed=3)
    present = torch.tensor([i for i, n in enumerate(counts) if n > 0])
    labels = present[torch.randint(0, len(present), (32,), generator=torch.Generator().manual_seed(3))]
    theirs = balanced_loss(logits, labels, loss_type, 0.999, samples_per_class=counts, balanced=True, safe=True)
    loss = {"cross_entropy": "softmax", "focal_loss": "focal", "binary_cross_entropy": "sigmoid"}[loss_type]
    ours = ClassBalancedLoss(counts, 0.999, loss=loss, zero_count="zero")(logits, labels)
    scale = 5 if loss_type == "binary_cross_entropy" else 1
    torch.testing.assert_close(ours / scale, theirs.double(), rtol=1e-6, atol=0)
    unsafe = balanced_loss(logits, labels, loss_type, 0.999, samples_per_class=counts, balanced=True)
    assert torch.isnan(unsafe)


# --------------------------------------------------------------------------------------------------------------
# torchvision.ops.sigmoid_focal_loss


def torchvision_sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """torchvision's published formula: BCE * (1 - p_t) ** gamma from probabilities, times alpha_t when
    alpha >= 0, reduced over every element."""
    p = torch.sigmoid(inputs)
    elements = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    elements = elements * (1 - p_t) ** gamma
    if alpha >= 0:
        elements = (alpha * targets + (1 - alpha) * (1 - targets)) * elements
    return {"none": elements, "mean": elements.mean(), "sum": elements.sum()}[reduction]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_torchvision_with_alpha_minus_one_maps_to_our_reductions(shape, dtype, gamma):
    logits, labels, counts = _case(*shape, dtype, seed=4)
    num_classes = shape[1]
    one_hot = F.one_hot(labels, num_classes).to(dtype)
    elements = torchvision_sigmoid_focal_loss(logits, one_hot, alpha=-1, gamma=gamma)
    criterion = ClassBalancedLoss(counts, 0.999, loss="focal", gamma=gamma, reduction="none")
    w_y = criterion.weight[labels].to(dtype)
    rtol = RTOL[dtype]
    per_sample = elements.sum(dim=1) * w_y
    torch.testing.assert_close(criterion(logits, labels), per_sample, rtol=rtol, atol=0)
    for reduction, want in (("sum", per_sample.sum()), ("mean", per_sample.mean())):
        got = ClassBalancedLoss(counts, 0.999, loss="focal", gamma=gamma, reduction=reduction)(logits, labels)
        torch.testing.assert_close(got, want, rtol=rtol, atol=0)

    def unweighted(reduction):
        return class_balanced_loss(logits, labels, None, loss="focal", gamma=gamma, reduction=reduction)

    tv_sum = torchvision_sigmoid_focal_loss(logits, one_hot, alpha=-1, gamma=gamma, reduction="sum")
    tv_mean = torchvision_sigmoid_focal_loss(logits, one_hot, alpha=-1, gamma=gamma, reduction="mean")
    torch.testing.assert_close(unweighted("sum"), tv_sum, rtol=rtol, atol=0)
    torch.testing.assert_close(unweighted("mean"), num_classes * tv_mean, rtol=rtol, atol=0)


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0])
def test_torchvision_multi_hot_is_multi_label_class(gamma):
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(12, 6, generator=g, dtype=torch.float64) * 3
    targets = (torch.rand(12, 6, generator=g) < 0.4).double()
    weights = torch.rand(6, generator=g, dtype=torch.float64) + 0.5
    elements = torchvision_sigmoid_focal_loss(logits, targets, alpha=-1, gamma=gamma)
    ours = class_balanced_loss(
        logits, targets, weights, loss="focal", gamma=gamma, multi_label="class", reduction="none"
    )
    torch.testing.assert_close(ours, (elements * weights).sum(dim=1), rtol=1e-12, atol=0)


def test_torchvision_alpha_is_no_rescaling_of_ours():
    logits, labels, _ = _case(64, 10, torch.float64, seed=6)
    one_hot = F.one_hot(labels, 10).double()
    with_alpha = torchvision_sigmoid_focal_loss(logits, one_hot, alpha=0.25).sum(dim=1)
    ours = class_balanced_loss(logits, labels, None, loss="focal", reduction="none")
    ratio = with_alpha / ours
    assert ratio.std() > 0.05 * ratio.mean()  # positives scaled by alpha, negatives by 1 - alpha: no common factor


def test_torchvision_gradient_is_nan_for_gamma_below_one_where_ours_is_finite():
    logits = torch.tensor([[30.0, -30.0, -20.0]])
    labels = torch.tensor([0])
    theirs_input = logits.clone().requires_grad_()
    torchvision_sigmoid_focal_loss(theirs_input, F.one_hot(labels, 3).float(), alpha=-1, gamma=0.5).sum().backward()
    assert torch.isnan(theirs_input.grad).all()
    ours_input = logits.clone().requires_grad_()
    class_balanced_loss(ours_input, labels, None, loss="focal", gamma=0.5, reduction="sum").backward()
    assert torch.isfinite(ours_input.grad).all()


# --------------------------------------------------------------------------------------------------------------
# PyPI's cbloss 0.2.0 (cbloss.loss.FocalLoss, cbloss.loss.ClassBalancedLoss)


def pypi_focal_loss(outputs, targets, num_classes, alpha=1.0, gamma=2.0, reduction="mean"):
    """Its FocalLoss: CE (softmax for C > 2, BCE on one logit for C == 2), p_t = exp(-CE), alpha (1 - p_t)^gamma CE."""
    if num_classes == 2:
        ce = F.binary_cross_entropy_with_logits(outputs, targets.float(), reduction="none")
    else:
        ce = F.cross_entropy(outputs, targets, reduction="none")
    elements = alpha * (1 - torch.exp(-ce)) ** gamma * ce
    return {"none": elements, "mean": elements.mean(), "sum": elements.sum()}[reduction]


def pypi_class_balanced_loss(samples_per_cls, beta, base_loss, logits, target):
    """Its ClassBalancedLoss: the base loss per sample (reduction "none") times w_y, averaged."""
    return (_peer_class_weights(samples_per_cls, beta).index_select(0, target) * base_loss(logits, target)).mean()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(16, 5), (64, 10)], ids=str)
def test_pypi_cbloss_cross_entropy_and_focal_map_to_ours(shape, dtype):
    logits, labels, counts = _case(*shape, dtype, seed=7)
    rtol = RTOL_PEER_WEIGHTS[dtype]
    theirs = pypi_class_balanced_loss(
        counts, 0.99, lambda z, y: F.cross_entropy(z, y, reduction="none"), logits, labels
    )
    torch.testing.assert_close(ClassBalancedLoss(counts, 0.99)(logits, labels), theirs.to(dtype), rtol=rtol, atol=0)
    for alpha, gamma in ((1.0, 2.0), (0.25, 0.5)):

        def focal(z, y, alpha=alpha, gamma=gamma):
            return pypi_focal_loss(z, y, shape[1], alpha, gamma, reduction="none")

        theirs = pypi_class_balanced_loss(counts, 0.99, focal, logits, labels)
        ours = ClassBalancedLoss(counts, 0.99, loss="softmax_focal", gamma=gamma)(logits, labels)
        torch.testing.assert_close(alpha * ours, theirs.to(dtype), rtol=rtol, atol=0)
        for reduction in ("none", "sum", "mean"):
            alone = pypi_focal_loss(logits, labels, shape[1], alpha, gamma, reduction)
            ours = ClassBalancedLoss.from_weights(None, loss="softmax_focal", gamma=gamma, reduction=reduction)
            torch.testing.assert_close(alpha * ours(logits, labels), alone, rtol=RTOL[dtype], atol=0)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_pypi_cbloss_binary_focal_is_softmax_focal_on_zero_and_the_logit(gamma):
    g = torch.Generator().manual_seed(8)
    x = torch.randn(40, generator=g, dtype=torch.float64) * 3
    labels = torch.randint(0, 2, (40,), generator=g)
    counts = [900, 35]

    def binary_focal(z, y):
        return pypi_focal_loss(z, y, 2, 1.0, gamma, reduction="none")

    theirs = pypi_class_balanced_loss(counts, 0.999, binary_focal, x, labels)
    two_logits = torch.stack([torch.zeros_like(x), x], dim=1)
    ours = ClassBalancedLoss(counts, 0.999, loss="softmax_focal", gamma=gamma)(two_logits, labels)
    torch.testing.assert_close(ours, theirs.double(), rtol=1e-6, atol=0)


def test_pypi_cbloss_bce_path_does_not_run():
    logits, labels, counts = _case(8, 5, torch.float32, seed=9)

    def bce(z, y):
        return F.binary_cross_entropy_with_logits(z, y, reduction="none")

    with pytest.raises(ValueError, match="Target size"):  # class indices: not the logits' shape
        pypi_class_balanced_loss(counts, 0.99, bce, logits, labels)
    with pytest.raises((IndexError, RuntimeError), match="index_select"):  # one-hot targets: not a weight index
        pypi_class_balanced_loss(counts, 0.99, bce, logits, F.one_hot(labels, 5).float())


def test_pypi_cbloss_with_an_empty_class_is_zero_where_ours_raises():
    logits, _, _ = _case(16, 3, torch.float64, seed=10)
    labels = torch.tensor([0, 2] * 8)  # no sample of the empty class, as in the data it was counted on
    counts = [300, 0, 12]

    def cross_entropy(z, y):
        return F.cross_entropy(z, y, reduction="none")

    theirs = pypi_class_balanced_loss(counts, 0.99, cross_entropy, logits, labels)
    assert theirs == 0.0  # every class but the empty one weighs 0 (finite / inf), the empty one NaN
    with pytest.raises(ValueError, match=r"samples_per_class: classes \[1\] have 0 samples"):
        ClassBalancedLoss(counts, 0.99)
    ours = ClassBalancedLoss(counts, 0.99, zero_count="zero")(logits, labels)
    assert ours > 0
