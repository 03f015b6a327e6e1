"""ClassBalancedLoss as an nn.Module: weights buffer, state_dict, .to(), dtype casts, errors, meta device,
torch.compile."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cbloss
import cbloss.adapters.torch as torch_adapter
from cbloss.adapters.torch import ClassBalancedLoss, class_balanced_loss

COUNTS = [500, 120, 30, 7, 1]


def test_weights_are_the_core_weights_in_a_float64_buffer():
    crit = ClassBalancedLoss(COUNTS, 0.999, normalize="samples")
    expected = cbloss.class_balanced_weights(COUNTS, 0.999, normalize="samples")
    assert "weight" in dict(crit.named_buffers())
    assert crit.weight.dtype == torch.float64
    np.testing.assert_array_equal(crit.weight.numpy(), expected)
    assert crit.num_classes == 5


def test_state_dict_round_trip_and_dtype_casts_keep_float64():
    crit = ClassBalancedLoss(COUNTS, 0.9999, loss="focal", gamma=1.0)
    state = crit.state_dict()
    assert set(state) == {"weight"}
    other = ClassBalancedLoss.from_weights(torch.ones(5), loss="focal", gamma=1.0)
    other.load_state_dict(state)
    torch.testing.assert_close(other.weight, crit.weight, rtol=0, atol=0)
    before = crit.weight.clone()
    crit.half()
    crit.to(torch.bfloat16)
    assert crit.weight.dtype == torch.float64
    torch.testing.assert_close(crit.weight, before, rtol=0, atol=0)


def test_module_follows_to_device_meta():
    crit = ClassBalancedLoss(COUNTS, 0.99).to("meta")
    assert crit.weight.device.type == "meta"


@pytest.mark.parametrize("loss", ["softmax", "sigmoid", "focal", "softmax_focal"])
@pytest.mark.parametrize("form", ["hard", "soft", "smooth-ignore", "weighted"])
def test_meta_device_forward_backward(loss, form):
    """Any tensor created without device= lands on the CPU and fails to mix with 'meta' inputs."""
    options = dict(loss=loss)
    if form == "smooth-ignore":
        options.update(label_smoothing=0.1, ignore_index=-1)
    if form == "weighted":
        options.update(reduction="weighted_mean")
    crit = ClassBalancedLoss(COUNTS, 0.99, **options).to("meta")
    x = torch.empty(4, 5, 3, device="meta", requires_grad=True)
    if form == "soft":
        target = torch.empty(4, 5, 3, device="meta")
    else:
        target = torch.empty(4, 3, dtype=torch.long, device="meta")
    loss_value = crit(x, target)
    assert loss_value.device.type == "meta" and loss_value.shape == ()
    loss_value.backward()
    assert x.grad.device.type == "meta" and x.grad.shape == x.shape


def test_module_equals_cross_entropy_loss_with_weight():
    """The drop-in replacement: from_weights(w) with weighted_mean is nn.CrossEntropyLoss(weight=w)."""
    torch.manual_seed(0)
    w = torch.tensor(cbloss.class_balanced_weights(COUNTS, 0.999))
    x = torch.randn(16, 5, dtype=torch.float64)
    y = torch.randint(0, 5, (16,))
    ours = ClassBalancedLoss.from_weights(w, reduction="weighted_mean")(x, y)
    theirs = torch.nn.CrossEntropyLoss(weight=w)(x, y)
    torch.testing.assert_close(ours, theirs, rtol=1e-13, atol=0)
    mean = ClassBalancedLoss(COUNTS, 0.999)(x, y)
    torch.testing.assert_close(mean, F.cross_entropy(x, y, weight=w, reduction="sum") / 16, rtol=1e-13, atol=0)


def test_unweighted_from_weights_none():
    crit = ClassBalancedLoss.from_weights(None)
    assert crit.weight is None and crit.num_classes is None
    x = torch.randn(6, 4, dtype=torch.float64)
    y = torch.randint(0, 4, (6,))
    torch.testing.assert_close(crit(x, y), F.cross_entropy(x, y))
    assert "num_classes=None" in repr(crit)


@pytest.mark.parametrize(
    ("call", "error", "name"),
    [
        (lambda: ClassBalancedLoss(COUNTS, 1.5), ValueError, "beta"),
        (lambda: ClassBalancedLoss([3, 0, 2], 0.9), ValueError, "samples_per_class"),
        (lambda: ClassBalancedLoss(COUNTS, 0.9, loss="hinge"), ValueError, "loss"),
        (lambda: ClassBalancedLoss(COUNTS, 0.9, reduction="avg"), ValueError, "reduction"),
        (lambda: ClassBalancedLoss(COUNTS, 0.9, loss="focal", gamma=-1), ValueError, "gamma"),
        (lambda: ClassBalancedLoss(COUNTS, 0.9, label_smoothing=2), ValueError, "label_smoothing"),
        (
            lambda: ClassBalancedLoss(COUNTS, 0.9, reduction="sum", global_normalizer=True),
            ValueError,
            "global_normalizer",
        ),
        (lambda: ClassBalancedLoss.from_weights([1.0, float("nan")]), ValueError, "weights"),
        (lambda: class_balanced_loss(torch.zeros(2, 3), torch.tensor([0, 3])), ValueError, "target"),
        (lambda: class_balanced_loss(torch.zeros(2, 3), torch.tensor([0, -1])), ValueError, "target"),
        (lambda: class_balanced_loss(torch.zeros(2, 3), torch.tensor([0, 1, 2])), ValueError, "target"),
        (lambda: class_balanced_loss(torch.zeros(2, 3), torch.full((2, 3), 0.5)), ValueError, "target"),
        (lambda: class_balanced_loss(torch.zeros(2, 3, dtype=torch.long), torch.tensor([0, 1])), TypeError, "input"),
        (lambda: class_balanced_loss(torch.zeros(2, 3), torch.tensor([0, 1]), torch.ones(4)), ValueError, "weights"),
        (lambda: class_balanced_loss(torch.zeros(2, 3), [0, 1]), TypeError, "target"),
        (lambda: class_balanced_loss(torch.zeros(2, 3), torch.tensor([True, False])), TypeError, "target"),
    ],
)
def test_errors_name_the_argument(call, error, name):
    with pytest.raises(error, match=f"^{name}"):
        call()


def test_ignore_index_is_not_range_checked_and_validate_false_skips_checks():
    x = torch.randn(3, 4)
    class_balanced_loss(x, torch.tensor([0, -100, 3]), ignore_index=-100)
    # validate=False: no check (and no device sync); the gather itself still rejects the index on CPU
    with pytest.raises((RuntimeError, IndexError)):
        class_balanced_loss(x, torch.tensor([0, 9, 3]), validate=False)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(6, 5), (3, 5, 4, 2), (5,)], ids=str)
@pytest.mark.parametrize(
    "options", [dict(), dict(reduction="sum"), dict(label_smoothing=0.2), dict(validate=False)], ids=str
)
def test_module_softmax_kernel_path_matches_the_core(options, shape, dtype, monkeypatch):
    """The module's direct F.cross_entropy call (softmax, "mean"/"sum", int64 targets, CPU) against the NumPy
    core (itself checked against the oracle): value and gradient, with the class dim 1 and unbatched."""
    rng = np.random.default_rng(7)
    num_classes = 5
    z = rng.normal(size=shape) * 3
    target = rng.integers(0, num_classes, size=(shape[0], *shape[2:]) if len(shape) > 1 else ())
    crit = ClassBalancedLoss(COUNTS, 0.99, **options)
    assert crit._kernel_only
    # the direct call must be what runs: the full path is not reached for valid input
    monkeypatch.setattr(torch_adapter, "_evaluate", lambda *a, **k: pytest.fail("took the full path"))
    core_options = {k: v for k, v in options.items() if k != "validate"}
    axis = 1 if len(shape) > 1 else 0
    weights = cbloss.class_balanced_weights(COUNTS, 0.99)
    expected, expected_grad = cbloss.class_balanced_loss_and_grad(z, target, weights, axis=axis, **core_options)
    x = torch.tensor(z, dtype=dtype, requires_grad=True)
    loss = crit(x, torch.tensor(target))
    loss.backward()
    rtol, atol = (1e-12, 1e-15) if dtype == torch.float64 else (1e-5, 1e-7)
    np.testing.assert_allclose(loss.detach().double().numpy(), expected, rtol=rtol, atol=atol)
    np.testing.assert_allclose(x.grad.double().numpy(), expected_grad, rtol=rtol, atol=atol)


@pytest.mark.parametrize(
    "call, error, name",
    [
        (lambda crit: crit(torch.zeros(2, 5), torch.tensor([0, 5])), ValueError, "target"),
        (lambda crit: crit(torch.zeros(2, 5), torch.tensor([0, -100])), ValueError, "target"),
        (lambda crit: crit(torch.zeros(2, 5), torch.tensor([0, 1, 2])), ValueError, "target"),
        (lambda crit: crit(torch.zeros(2, 5, 3), torch.tensor([[0, 1], [2, 3]])), ValueError, "target"),
        (lambda crit: crit(torch.zeros(2, 4), torch.tensor([0, 1])), ValueError, "weights"),
        (lambda crit: crit([[0.0] * 5], torch.tensor([0])), TypeError, "input"),
        (lambda crit: crit(torch.zeros(2, 5), [0, 1]), TypeError, "target"),
        (lambda crit: crit(torch.zeros(2, 5, dtype=torch.int64), torch.tensor([0, 1])), TypeError, "input"),
    ],
)
def test_module_kernel_path_raises_the_core_errors(call, error, name):
    """Bad input to the module's direct F.cross_entropy call gives the same errors as the full path."""
    crit = ClassBalancedLoss(COUNTS, 0.99)
    assert crit._kernel_only
    with pytest.raises(error, match=f"^{name}"):
        call(crit)


@pytest.mark.parametrize("loss", ["softmax", "sigmoid", "focal", "softmax_focal"])
@pytest.mark.parametrize(
    "options",
    [dict(), dict(label_smoothing=0.1), dict(ignore_index=5), dict(reduction="weighted_mean"), dict(reduction="none")],
    ids=str,
)
@pytest.mark.parametrize("bad", [-100, -1, 4, 2**40])
@pytest.mark.parametrize("shape", [(3, 4), (3, 4, 2)], ids=str)
@pytest.mark.parametrize("requires_grad", [True, False])
def test_out_of_range_labels_raise_the_core_error(loss, options, bad, shape, requires_grad):
    """On the CPU the hard-label paths leave the range check to the kernels (F.cross_entropy, the core's first
    gather at the labels) and convert their error: every out-of-range label, PyTorch's default ignore value -100
    included, gives the same ValueError whatever the loss, the options, the layout and whether a gradient is
    wanted."""
    x = torch.randn(shape, requires_grad=requires_grad)
    target = torch.tensor([0, bad, 3])
    if len(shape) == 3:
        target = torch.stack([target, torch.tensor([1, 2, 0])], dim=-1)
    with pytest.raises(ValueError, match=rf"^target: class indices must be in \[0, 4\), got \[{bad}\]"):
        class_balanced_loss(x, target, loss=loss, **options)


@pytest.mark.parametrize("loss", ["softmax", "sigmoid", "focal", "softmax_focal"])
@pytest.mark.parametrize("options", [dict(), dict(ignore_index=5), dict(label_smoothing=0.1)], ids=str)
@pytest.mark.parametrize("requires_grad", [True, False])
def test_cpu_class_indices_skip_the_separate_label_pass(loss, options, requires_grad, monkeypatch):
    """Valid class indices on the CPU are not read by a separate check (the kernels check them), except with
    label smoothing on the one-hot paths, whose one-hot would not reject a bad index: there the check runs."""
    calls = []
    monkeypatch.setattr(torch_adapter, "_check_target_values", lambda *args: calls.append(args))
    x = torch.randn(6, 4, requires_grad=requires_grad)
    class_balanced_loss(x, torch.tensor([0, 1, 2, 3, 2, 1]), loss=loss, **options)
    needs_check = bool(options.get("label_smoothing")) and loss != "softmax"
    assert len(calls) == int(needs_check)


@pytest.mark.parametrize(
    "options",
    [
        dict(loss="focal", ignore_index=-1),
        dict(loss="sigmoid"),
        dict(loss="softmax_focal"),
        dict(loss="softmax"),
        dict(loss="softmax", ignore_index=-1),
    ],
    ids=["focal-ignore", "sigmoid-mean", "softmax_focal-mean", "softmax-mean", "softmax-ignore"],
)
def test_compile_fullgraph_dynamic_no_recompile(options):
    """One graph, no graph break, no recompilation across batch sizes. aot_eager traces forward and backward
    through AOTAutograd like inductor does, without the C++ compile time. Softmax without ignore_index folds
    1 / batch size into the weights: that must stay symbolic, not guard on the batch size."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    crit = ClassBalancedLoss(COUNTS, 0.99, **options)
    low = -1 if options.get("ignore_index") == -1 else 0
    compiled = torch.compile(crit, fullgraph=True, dynamic=True, backend="aot_eager")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # array_api_compat's lru_cache'd helpers: dynamo traces through them
        with torch._dynamo.config.patch(error_on_recompile=True):
            for n in (3, 8, 13):
                x = torch.randn(n, 5, requires_grad=True)
                y = torch.randint(low, 5, (n,))
                loss = compiled(x, y)
                loss.backward()
                reference = x.detach().clone().requires_grad_()
                expected = crit(reference, y)
                expected.backward()
                torch.testing.assert_close(loss, expected)
                torch.testing.assert_close(x.grad, reference.grad)
    assert counters["stats"]["unique_graphs"] == 1
    assert not counters["graph_break"]


def test_weight_cache_follows_the_buffer_and_class_count_is_checked():
    crit = ClassBalancedLoss(COUNTS, 0.99, reduction="sum")
    x = torch.randn(6, 5)
    y = torch.randint(0, 5, (6,))
    before = crit(x, y)
    with torch.no_grad():
        crit.weight.mul_(2.0)  # in place: the cached float32 copy must be refreshed
    torch.testing.assert_close(crit(x, y), 2 * before)
    crit.load_state_dict({"weight": torch.ones(5, dtype=torch.float64)})
    torch.testing.assert_close(crit(x, y), F.cross_entropy(x, y, reduction="sum"))
    with pytest.raises(ValueError, match=r"^weights"):
        crit(torch.randn(6, 4), torch.randint(0, 4, (6,)))
