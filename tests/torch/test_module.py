"""ClassBalancedLoss as an nn.Module: weights buffer, state_dict, .to(), dtype casts, errors, meta device,
torch.compile."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cbloss
import cbloss.adapters.torch
from cbloss.adapters.torch import ClassBalancedLoss, class_balanced_loss
from tests.examples import check_examples_run_as_pasted

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
        # (1,) tensors, which PyTorch converts to numbers, are no scalar options, as NumPy's (1,) arrays are not
        (lambda: ClassBalancedLoss(COUNTS, 0.9, loss="focal", gamma=torch.tensor([2.0])), TypeError, "gamma"),
        (lambda: ClassBalancedLoss(COUNTS, 0.9, label_smoothing=torch.tensor([0.1])), TypeError, "label_smoothing"),
        (lambda: ClassBalancedLoss(COUNTS, 0.9, ignore_index=torch.tensor([2])), TypeError, "ignore_index"),
        (lambda: ClassBalancedLoss(COUNTS, 0.9, ignore_index=torch.tensor(2.0)), TypeError, "ignore_index"),
    ],
)
def test_errors_name_the_argument(call, error, name):
    with pytest.raises(error, match=f"^{name}"):
        call()


@pytest.mark.parametrize("multi_label", [None, "class"])
def test_messages_name_other_arguments_as_pytorch_does(multi_label):
    """A message about one argument that mentions another names that one as PyTorch does (input, target), and
    gives the shape wanted: one weight per position, also for targets shaped like the input."""
    target = torch.tensor([0, 1]) if multi_label is None else torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    options = dict(loss="sigmoid", multi_label=multi_label, sample_weight=torch.ones(3))
    with pytest.raises(ValueError, match=r"^sample_weight: must have one weight per position, shape \(2,\)") as info:
        class_balanced_loss(torch.zeros(2, 3), target, **options)
    assert "labels" not in str(info.value) and "target's shape" in str(info.value)


def test_ignore_index_is_not_range_checked_and_validate_false_skips_checks():
    x = torch.randn(3, 4)
    class_balanced_loss(x, torch.tensor([0, -100, 3]), ignore_index=-100)
    # validate=False: no check (and no device sync); the gather itself still rejects the index on CPU
    with pytest.raises((RuntimeError, IndexError)):
        class_balanced_loss(x, torch.tensor([0, 9, 3]), validate=False)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(6, 5), (3, 5, 4, 2), (5,)], ids=str)
@pytest.mark.parametrize("loss", ["softmax", "sigmoid", "focal", "softmax_focal"])
@pytest.mark.parametrize(
    "options", [dict(), dict(reduction="sum"), dict(label_smoothing=0.2), dict(validate=False)], ids=str
)
def test_module_matches_the_core(options, loss, shape, dtype):
    """The module against the NumPy core (itself checked against the oracle): value and gradient, with the
    class dim 1 and unbatched."""
    rng = np.random.default_rng(7)
    num_classes = 5
    z = rng.normal(size=shape) * 3
    target = rng.integers(0, num_classes, size=(shape[0], *shape[2:]) if len(shape) > 1 else ())
    crit = ClassBalancedLoss(COUNTS, 0.99, loss=loss, **options)
    core_options = {k: v for k, v in options.items() if k != "validate"}
    axis = 1 if len(shape) > 1 else 0
    weights = cbloss.class_balanced_weights(COUNTS, 0.99)
    expected, expected_grad = cbloss.class_balanced_loss_and_grad(
        z, target, weights, axis=axis, loss=loss, **core_options
    )
    x = torch.tensor(z, dtype=dtype, requires_grad=True)
    loss_value = crit(x, torch.tensor(target))
    loss_value.backward()
    assert loss_value.dtype == dtype and x.grad.dtype == dtype
    rtol, atol = (1e-12, 1e-15) if dtype == torch.float64 else (1e-5, 1e-7)
    np.testing.assert_allclose(loss_value.detach().double().numpy(), expected, rtol=rtol, atol=atol)
    np.testing.assert_allclose(x.grad.double().numpy(), expected_grad, rtol=rtol, atol=atol)


@pytest.mark.parametrize(
    "call, error, name",
    [
        (lambda crit: crit(torch.zeros(2, 5), torch.tensor([0, 5])), ValueError, "target"),
        (lambda crit: crit(torch.zeros(2, 5), torch.tensor([0, -100])), ValueError, "target"),
        (lambda crit: crit(torch.zeros(2, 5), torch.tensor([0, 1, 2])), ValueError, "target"),
        (lambda crit: crit(torch.zeros(2, 5, 3), torch.tensor([[0, 1], [2, 3]])), ValueError, "target"),
        (lambda crit: crit(torch.zeros(2, 4), torch.tensor([0, 1])), ValueError, "samples_per_class"),
        (lambda crit: crit([[0.0] * 5], torch.tensor([0])), TypeError, "input"),
        (lambda crit: crit(torch.zeros(2, 5), [0, 1]), TypeError, "target"),
        (lambda crit: crit(torch.zeros(2, 5, dtype=torch.int64), torch.tensor([0, 1])), TypeError, "input"),
    ],
)
@pytest.mark.parametrize("loss", ["softmax", "sigmoid", "focal", "softmax_focal"])
def test_module_errors_name_the_argument(call, error, name, loss):
    crit = ClassBalancedLoss(COUNTS, 0.99, loss=loss)
    with pytest.raises(error, match=f"^{name}"):
        call(crit)


@pytest.mark.parametrize("loss", ["softmax", "sigmoid", "focal", "softmax_focal"])
@pytest.mark.parametrize(
    "options",
    [dict(), dict(label_smoothing=0.1), dict(ignore_index=5), dict(reduction="weighted_mean"), dict(reduction="none")],
    ids=str,
)
@pytest.mark.parametrize("bad", [-100, -1, 4, 2**40, -(2**63)])
@pytest.mark.parametrize("shape", [(3, 4), (3, 4, 2)], ids=str)
@pytest.mark.parametrize("requires_grad", [True, False])
def test_out_of_range_labels_raise_the_core_error(loss, options, bad, shape, requires_grad):
    """Every out-of-range label, PyTorch's default ignore value -100 and the smallest int64 included, gives the
    core's ValueError whatever the loss, the options, the layout and whether a gradient is wanted."""
    x = torch.randn(shape, requires_grad=requires_grad)
    target = torch.tensor([0, bad, 3])
    if len(shape) == 3:
        target = torch.stack([target, torch.tensor([1, 2, 0])], dim=-1)
    with pytest.raises(ValueError, match=rf"^target: class indices must be in \[0, 4\), got \[{bad}\]"):
        class_balanced_loss(x, target, loss=loss, **options)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_gamma_beyond_the_compute_dtype_is_named(dtype):
    with pytest.raises(ValueError, match=r"^gamma: must be at most 3.402823e\+38"):
        class_balanced_loss(torch.randn(2, 3, dtype=dtype), torch.tensor([0, 2]), loss="focal", gamma=1e39)


@pytest.mark.parametrize("loss", ["softmax", "focal", "softmax_focal"])
@pytest.mark.parametrize("ignore_index", [None, -1, 2**63 - 1])
def test_uint64_labels_beyond_int64_are_out_of_range(loss, ignore_index):
    """2**64 - 1 in uint64 is -1 in int64: read as int64's largest value instead (its smallest where that is
    ignore_index), an out-of-range label, never an ignored one (docs/conventions.md §6.1), checked or not."""
    target = torch.tensor([0, 2**64 - 1, 3], dtype=torch.uint64)
    stand_in = -(2**63) if ignore_index == 2**63 - 1 else 2**63 - 1
    with pytest.raises(ValueError, match=rf"^target: class indices must be in \[0, 4\), got \[{stand_in}\]"):
        class_balanced_loss(torch.randn(3, 4), target, loss=loss, ignore_index=ignore_index)
    with pytest.raises((RuntimeError, IndexError)):  # unchecked: the gather's own error, never a dropped position
        class_balanced_loss(torch.randn(3, 4), target, loss=loss, ignore_index=ignore_index, validate=False)


@pytest.mark.parametrize(
    "options",
    [
        dict(loss="focal", ignore_index=-1),
        dict(loss="sigmoid"),
        dict(loss="softmax_focal"),
        dict(loss="softmax"),
        dict(loss="softmax", ignore_index=-1),
        dict(loss="focal", multi_label="class"),
        dict(loss="focal", multi_label="sample", label_smoothing=0.1),
        dict(loss="sigmoid", multi_label="class"),
    ],
    ids=[
        "focal-ignore",
        "sigmoid-mean",
        "softmax_focal-mean",
        "softmax-mean",
        "softmax-ignore",
        "focal-multi-hot-class",
        "focal-multi-hot-sample-smoothed",
        "sigmoid-multi-hot-class",
    ],
)
def test_compile_fullgraph_dynamic_no_recompile(options):
    """One graph, no graph break, no recompilation across batch sizes, no array-api-compat lookup traced. aot_eager
    traces forward and backward through AOTAutograd like inductor does, without the C++ compile time. The means'
    denominators are computed from the labels as tensors: nothing may guard on the batch size."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    crit = ClassBalancedLoss(COUNTS, 0.99, **options)
    low = -1 if options.get("ignore_index") == -1 else 0
    compiled = torch.compile(crit, fullgraph=True, dynamic=True, backend="aot_eager")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch._dynamo.config.patch(error_on_recompile=True):
            for n in (3, 8, 13):
                x = torch.randn(n, 5, requires_grad=True)
                y = torch.randint(low, 5, (n,))
                if "multi_label" in options:
                    y = (torch.rand(n, 5) < 0.4).float()
                loss = compiled(x, y)
                loss.backward()
                reference = x.detach().clone().requires_grad_()
                expected = crit(reference, y)
                expected.backward()
                torch.testing.assert_close(loss, expected)
                torch.testing.assert_close(x.grad, reference.grad)
    assert counters["stats"]["unique_graphs"] == 1
    assert not counters["graph_break"]
    # the namespace is resolved outside the compiled region (docs/conventions.md §13): Dynamo meets no cached helper
    assert not [str(w.message) for w in caught if "lru_cache" in str(w.message)]


@pytest.mark.parametrize("loss", ["softmax", "focal", "softmax_focal"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_compiled_soft_targets_read_the_module_weights_in_the_compute_dtype(loss, dtype):
    """Soft targets read every class weight at every element: compiled, the float64 buffer is cast once to the
    compute dtype (float32 for bfloat16 logits, float64 for float64 ones), and the loss and gradient are eager's
    (to rounding: compiled graphs evaluate the transcendentals in their shared-exp forms)."""
    torch._dynamo.reset()
    crit = ClassBalancedLoss(COUNTS, 0.99, loss=loss, label_smoothing=0.1)
    compiled = torch.compile(crit, fullgraph=True, backend="aot_eager")
    x = torch.randn(6, 5, dtype=dtype, requires_grad=True)
    targets = torch.softmax(torch.randn(6, 5, dtype=torch.float64), dim=1).to(dtype)
    value = compiled(x, targets)
    (grad,) = torch.autograd.grad(value, x)
    reference = x.detach().clone().requires_grad_()
    expected = crit(reference, targets)
    (expected_grad,) = torch.autograd.grad(expected, reference)
    assert value.dtype == expected.dtype == (torch.float32 if dtype == torch.bfloat16 else dtype)
    # float64 to 1e-13: weights rounded to float32 on the way would be off by ~1e-8
    tolerance = dict(rtol=1e-13, atol=1e-15) if dtype == torch.float64 else {}
    torch.testing.assert_close(value, expected, **tolerance)
    torch.testing.assert_close(grad, expected_grad, **tolerance)


@pytest.mark.parametrize("loss", ["softmax", "sigmoid", "focal", "softmax_focal"])
@pytest.mark.parametrize("options", [{}, {"ignore_index": -1, "reduction": "weighted_mean"}], ids=["mean", "ignore"])
def test_compiled_dense_input_gathers_the_label_weights_once_per_position(loss, options):
    """Class indices over several dims (an (N, C, H, W) input): compiled, the weights of the positions' labels are
    gathered by one opaque kernel (``cbloss::take_weights``, symbolic shapes included), and the loss and the
    gradient are eager's, with sample weights and ignored labels too."""
    torch._dynamo.reset()
    crit = ClassBalancedLoss(COUNTS, 0.99, loss=loss, **options)
    compiled = torch.compile(crit, fullgraph=True, dynamic=True, backend="aot_eager")
    low = -1 if "ignore_index" in options else 0
    with torch._dynamo.config.patch(error_on_recompile=True):
        for n, h in ((2, 3), (4, 6)):  # no size equal to another (Dynamo would guard on the equality)
            x = torch.randn(n, 5, h, 7, dtype=torch.float64, requires_grad=True)
            y = torch.randint(low, 5, (n, h, 7))
            sample_weight = torch.rand(n, h, 7, dtype=torch.float64)
            value = compiled(x, y, sample_weight)
            (grad,) = torch.autograd.grad(value, x)
            reference = x.detach().clone().requires_grad_()
            expected = crit(reference, y, sample_weight)
            (expected_grad,) = torch.autograd.grad(expected, reference)
            torch.testing.assert_close(value, expected, rtol=1e-13, atol=1e-15)
            torch.testing.assert_close(grad, expected_grad, rtol=1e-13, atol=1e-15)
    explained = torch._dynamo.explain(crit)(x.detach(), y, sample_weight)
    assert explained.graph_count == 1 and not explained.break_reasons
    assert "cbloss.take_weights" in explained.graphs[0].code


@pytest.mark.parametrize("loss", ["sigmoid", "focal"])
@pytest.mark.parametrize("layout", ["rows", "transposed rows", "channels_last", "dense"])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_compiled_label_entries_match_eager_in_every_layout(loss, layout, reduction):
    """Compiled, the sigmoid losses select the label's entry inside the class sum (on (N, C) rows too, where the
    gradient's stays a scatter): values and gradients are eager's in every memory layout, ignored labels included."""
    torch._dynamo.reset()
    crit = ClassBalancedLoss(COUNTS, 0.99, loss=loss, ignore_index=-1, reduction=reduction)
    compiled = torch.compile(crit, fullgraph=True, backend="aot_eager")
    generator = torch.Generator().manual_seed(3)
    shape = (6, 5) if "rows" in layout else (2, 5, 3, 4)
    x = torch.randn(shape, dtype=torch.float64, generator=generator) * 3
    if layout == "transposed rows":
        x = x.t().contiguous().t()
    elif layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    y = torch.randint(-1, 5, shape[:1] + shape[2:], generator=generator)
    value = compiled(x, y)
    (grad,) = torch.autograd.grad(value.sum(), x)
    reference = x.detach().clone().requires_grad_()
    expected = crit(reference, y)
    (expected_grad,) = torch.autograd.grad(expected.sum(), reference)
    torch.testing.assert_close(value, expected, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("loss", ["softmax", "focal"])
@pytest.mark.parametrize("given", ["numpy", "list", "numpy scalars"])
def test_compiled_functional_form_reads_host_weights_outside_the_graph(loss, given):
    """NumPy or list weights (what cbloss.class_balanced_weights returns) closed over by a compiled function: read
    and checked on the host outside the graph (one break), the loss compiled around it with eager's values and no
    eager label check (an out-of-range label meets the kernel's own error); bad host weights are named errors."""
    torch._dynamo.reset()
    weights = cbloss.class_balanced_weights(COUNTS, 0.999)
    weights = {"numpy": weights, "list": weights.tolist(), "numpy scalars": list(weights)}[given]
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    compiled = torch.compile(lambda a, b, w: class_balanced_loss(a, b, w, loss=loss), backend="aot_eager")
    explained = torch._dynamo.explain(lambda a, b: class_balanced_loss(a, b, weights, loss=loss))(x, y)
    assert explained.graph_count == 2 and len(explained.break_reasons) == 1
    value = compiled(x, y, weights)
    (grad,) = torch.autograd.grad(value, x)
    reference = x.detach().clone().requires_grad_()
    expected = class_balanced_loss(reference, y, weights, loss=loss)
    torch.testing.assert_close(value, expected, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(grad, torch.autograd.grad(expected, reference)[0], rtol=1e-13, atol=1e-15)
    with pytest.raises((RuntimeError, IndexError)) as info:  # the gather's own error: no checks in the graph
        compiled(x.detach(), torch.tensor([0, 1, 2, 3, 4, 9]), weights)
    assert "class indices must be in" not in str(info.value)
    for bad, error in (
        ([np.nan, 1, 1, 1, 1], ValueError),
        ([-1.0, 1, 1, 1, 1], ValueError),
        ([1 + 5j, 1, 1, 1, 1], TypeError),
    ):
        with pytest.raises(error, match=r"^weights: must be"):
            compiled(x.detach(), y, np.array(bad))
    with pytest.raises(ValueError, match=r"^sample_weight: must be finite and >= 0"):
        torch.compile(lambda a, b: class_balanced_loss(a, b, sample_weight=np.full(6, -1.0)), backend="aot_eager")(x, y)
    # within the compute dtype's range: a float32 loss cannot hold 1e39 (it would be inf), a float64 one can
    beyond = np.array([1.0, 1e39, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"^weights: must be at most 3.402823e\+38"):
        compiled(x.detach().float(), y, beyond)
    assert torch.isfinite(compiled(x.detach(), y, beyond))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"loss": "focal", "gamma": 0.5, "label_smoothing": 0.1},
        {"loss": "softmax_focal", "gamma": 2.0, "reduction": "sum"},
        {"loss": "sigmoid", "multi_label": "class"},
    ],
    ids=["defaults", "focal-smoothed", "softmax_focal-sum", "sigmoid-multi-hot"],
)
def test_compiled_functional_form_with_tensor_weights_is_one_dynamic_graph(options):
    """The functional form with a tensor weight, compiled with dynamic=True: one graph across batch sizes with eager's
    values. Its options are checked at every call, and Dynamo makes their Python floats symbolic under dynamic=True:
    the checks must trace (comparisons, no math.isnan) rather than break the graph."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    weights = torch.tensor([0.5, 1.0, 2.0, 0.25, 1.5])
    compiled = torch.compile(
        lambda a, b: class_balanced_loss(a, b, weights, **options), fullgraph=True, dynamic=True, backend="aot_eager"
    )
    with torch._dynamo.config.patch(error_on_recompile=True):
        for n in (3, 8, 13):
            x = torch.randn(n, 5, requires_grad=True)
            y = (torch.rand(n, 5) < 0.4).float() if "multi_label" in options else torch.randint(0, 5, (n,))
            value = compiled(x, y)
            (grad,) = torch.autograd.grad(value, x)
            reference = x.detach().clone().requires_grad_()
            expected = class_balanced_loss(reference, y, weights, **options)
            torch.testing.assert_close(value, expected)
            torch.testing.assert_close(grad, torch.autograd.grad(expected, reference)[0])
    assert counters["stats"]["unique_graphs"] == 1
    assert not counters["graph_break"]


@pytest.mark.parametrize("multi_label", ["class", "sample"])
@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_compiled_dense_multi_hot_targets_match_eager(multi_label, gamma):
    """Multi-hot targets on an (N, C, H, W) input: compiled, the one-exp pieces run on the input's memory order
    (their class-last views handed to the engine), and the loss and gradient are eager's."""
    torch._dynamo.reset()
    crit = ClassBalancedLoss(COUNTS, 0.99, loss="focal", gamma=gamma, multi_label=multi_label)
    compiled = torch.compile(crit, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 5, 3, 7, dtype=torch.float64, requires_grad=True)
    targets = (torch.rand(2, 5, 3, 7) < 0.4).to(torch.float64)
    value = compiled(x, targets)
    (grad,) = torch.autograd.grad(value, x)
    reference = x.detach().clone().requires_grad_()
    expected = crit(reference, targets)
    (expected_grad,) = torch.autograd.grad(expected, reference)
    torch.testing.assert_close(value, expected, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize(
    "options, target",
    [({"loss": "focal"}, "indices"), ({"loss": "sigmoid", "multi_label": "class"}, "multi-hot")],
    ids=["focal-indices", "sigmoid-multi-hot"],
)
def test_exported_program_saves_loads_and_matches_eager(options, target):
    """``torch.export`` of the module on a dense input: the program, with the custom operators it calls, survives
    ``torch.export.save``/``load`` and gives eager's loss."""
    import io

    crit = ClassBalancedLoss(COUNTS, 0.99, **options)
    x = torch.randn(2, 5, 3, 4)
    y = torch.randint(0, 5, (2, 3, 4)) if target == "indices" else (torch.rand(2, 5, 3, 4) < 0.4).float()
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(crit, (x, y)), buffer)
    buffer.seek(0)
    program = torch.export.load(buffer)
    torch.testing.assert_close(program.module()(x, y), crit(x, y))


class _HeadAndLoss(torch.nn.Module):
    """A linear head and a cbloss module, as a model exported with its loss for training."""

    def __init__(self, head_init: float | None, **options):
        super().__init__()
        self.head = torch.nn.Linear(4, 5, dtype=torch.float64)
        if head_init is not None:  # a zero-initialised head gives logits exactly 0
            torch.nn.init.constant_(self.head.weight, head_init)
            torch.nn.init.constant_(self.head.bias, head_init)
        self.loss = ClassBalancedLoss(COUNTS, 0.99, **options)

    def forward(self, x, target):
        return self.loss(self.head(x), target)


@pytest.mark.parametrize("strict", [False, True], ids=["non-strict", "strict"])
@pytest.mark.parametrize("head_init", [None, 0.0], ids=["random-head", "zero-head"])
@pytest.mark.parametrize(
    "options, target",
    [
        ({"loss": "focal", "gamma": 0.5}, "indices"),
        ({"loss": "focal", "reduction": "none"}, "indices"),
        ({"loss": "softmax_focal", "gamma": 0.5}, "indices"),
        ({"loss": "sigmoid", "label_smoothing": 0.1}, "indices"),
        ({"loss": "softmax_focal"}, "soft"),
        ({"loss": "focal", "multi_label": "class"}, "multi-hot"),
    ],
    ids=["focal", "focal-none", "softmax-focal", "sigmoid-smoothed", "softmax-focal-soft", "focal-multi-hot"],
)
def test_exported_program_trains_with_the_analytic_gradient(options, target, head_init, strict):
    """A model exported with its loss (strict or not) gives eager's loss and eager's analytic gradients for the
    model's parameters, also at logits exactly 0 (where the formulas' own derivative differs), after a save and
    load; double backward through it raises, as eagerly."""
    import io

    torch.manual_seed(0)
    model = _HeadAndLoss(head_init, **options)
    x = torch.randn(6, 4, dtype=torch.float64)
    y = {
        "indices": torch.randint(0, 5, (6,)),
        "soft": torch.softmax(torch.randn(6, 5, dtype=torch.float64), -1),
        "multi-hot": (torch.rand(6, 5) < 0.4).double(),
    }[target]
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(model, (x, y), strict=strict), buffer)
    buffer.seek(0)
    exported = torch.export.load(buffer).module()
    exported.load_state_dict(model.state_dict(), strict=False)
    params = [model.head.weight, model.head.bias]
    expected = model(x, y)
    expected_grads = torch.autograd.grad(expected.sum(), params)
    value = exported(x, y)
    grads = torch.autograd.grad(value.sum(), [exported.head.weight, exported.head.bias], create_graph=True)
    torch.testing.assert_close(value, expected, rtol=1e-13, atol=1e-15)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-15)
    with pytest.raises(RuntimeError, match="double backward"):
        grads[0].sum().backward()


class _HeadAndFunctionalLoss(torch.nn.Module):
    """A linear head and the functional loss, its options made inside the traced forward."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(4, 5, dtype=torch.float64)
        self.register_buffer("class_weights", torch.tensor(cbloss.class_balanced_weights(COUNTS, 0.99)))

    def forward(self, x, target):
        return class_balanced_loss(self.head(x), target, self.class_weights, loss="focal", gamma=0.5)


@pytest.mark.parametrize("strict", [False, True], ids=["non-strict", "strict"])
def test_exported_functional_loss_trains_under_a_checkpoint(strict):
    """The functional form exported (its options made while Dynamo traces, for a strict export) and the program run
    under non-reentrant activation checkpointing: eager's loss and gradients."""
    from torch.utils.checkpoint import checkpoint

    torch.manual_seed(1)
    model, x, y = _HeadAndFunctionalLoss(), torch.randn(6, 4, dtype=torch.float64), torch.randint(0, 5, (6,))
    exported = torch.export.export(model, (x, y), strict=strict).module()
    expected = model(x, y)
    expected_grads = torch.autograd.grad(expected, [model.head.weight, model.head.bias])
    value = checkpoint(exported, x, y, use_reentrant=False)
    grads = torch.autograd.grad(value, [exported.head.weight, exported.head.bias])
    torch.testing.assert_close(value, expected, rtol=1e-13, atol=1e-15)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-15)


def test_eager_calls_keep_their_checks_while_another_thread_traces():
    """torch.compiler.is_compiling() is one flag for the whole process, set while any thread compiles or exports:
    an eager call in another thread must still check its values (a negative weight, soft targets that do not sum
    to 1), refuse double backward, and give eager's numbers. Here a non-strict torch.export is held inside a
    module's forward in a second thread while this one calls the losses."""
    import threading

    inside, release = threading.Event(), threading.Event()

    class Paused(torch.nn.Module):
        def forward(self, a):
            inside.set()
            release.wait(60)
            return a * 2

    exporter = threading.Thread(target=lambda: torch.export.export(Paused(), (torch.randn(2),), strict=False))
    exporter.start()
    try:
        assert inside.wait(60) and torch.compiler.is_compiling()  # the process-wide flag is set meanwhile
        x, y = torch.randn(4, 5), torch.tensor([0, 1, 4, 2])
        with pytest.raises(ValueError, match=r"^weight"):
            class_balanced_loss(x, y, torch.tensor([1.0, -5.0, 1.0, 1.0, 1.0]))
        with pytest.raises(ValueError, match=r"^target"):
            class_balanced_loss(x, torch.full((4, 5), 0.5))
        crit = ClassBalancedLoss(COUNTS, 0.99, loss="focal")
        z = x.clone().requires_grad_()
        (grad,) = torch.autograd.grad(crit(z, y), z, create_graph=True)
        with pytest.raises(RuntimeError, match="double backward"):
            grad.sum().backward()
    finally:
        release.set()
        exporter.join()
    torch.testing.assert_close(grad.detach(), torch.autograd.grad(crit(z, y), z)[0], rtol=0, atol=0)


def _write_half(crit):
    with torch.no_grad():
        crit.weight.mul_(0.5)


def _write_data_copy(crit):
    crit.weight.data.copy_(torch.arange(1.0, 6.0, dtype=torch.float64))


def _write_data_assign(crit):
    crit.weight.data = torch.arange(1.0, 6.0, dtype=torch.float64)


def _write_numpy_view(crit):
    crit.weight.numpy()[:] = np.arange(1.0, 6.0)


def _write_state_dict(crit):
    crit.load_state_dict({"weight": torch.arange(1.0, 6.0, dtype=torch.float64)})


@pytest.mark.parametrize("loss", ["softmax", "sigmoid", "focal", "softmax_focal"])
@pytest.mark.parametrize(
    "write",
    [_write_half, _write_data_copy, _write_data_assign, _write_numpy_view, _write_state_dict],
    ids=lambda f: f.__name__[len("_write_") :],
)
def test_every_write_to_the_weight_buffer_shows_in_the_next_call(write, loss):
    """The buffer is cast at each call: in-place writes, ``.data`` writes (which bypass the version counter),
    the NumPy view and load_state_dict all change the next loss, after a call that used the old weights."""
    crit = ClassBalancedLoss(COUNTS, 0.99, loss=loss, reduction="sum")
    x = torch.randn(6, 5, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4, 2])
    old = crit.weight.clone()
    torch.testing.assert_close(crit(x, y), class_balanced_loss(x, y, old, loss=loss, reduction="sum"))
    write(crit)
    assert crit.weight.dtype == torch.float64 and not torch.equal(crit.weight, old)
    expected = class_balanced_loss(x, y, crit.weight.clone(), loss=loss, reduction="sum")
    torch.testing.assert_close(crit(x, y), expected, rtol=0, atol=0)
    if write is not _write_half:
        torch.testing.assert_close(
            expected, class_balanced_loss(x, y, torch.arange(1.0, 6.0), loss=loss, reduction="sum")
        )


@pytest.mark.parametrize("loss", ["softmax", "focal"])
def test_deepcopy_is_independent(loss):
    crit = ClassBalancedLoss(COUNTS, 0.99, loss=loss, reduction="sum")
    x = torch.randn(6, 5, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4, 2])
    before = crit(x, y)
    twin = copy.deepcopy(crit)
    twin.weight.data.copy_(torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(twin(x, y), class_balanced_loss(x, y, loss=loss, reduction="sum"), rtol=0, atol=0)
    torch.testing.assert_close(crit(x, y), before, rtol=0, atol=0)


@pytest.mark.parametrize("flag", ["validate", "global_normalizer"])
def test_flags_are_bools(flag):
    """A string is no flag: "False" would be true."""
    x, y = torch.randn(6, 4), torch.randint(0, 4, (6,))
    with pytest.raises(ValueError, match=rf"^{flag}: must be one of \[True, False\], got 'False'"):
        class_balanced_loss(x, y, **{flag: "False"})
    with pytest.raises(ValueError, match=rf"^{flag}: must be one of"):
        ClassBalancedLoss.from_weights(None, **{flag: "False"})


@pytest.mark.parametrize("validate", [True, False])
def test_complex_weights_are_a_type_error(validate):
    """Complex class or sample weights (even with a zero imaginary part) are not real numbers: a TypeError naming
    the argument, never a kernel's error or a cast that drops the imaginary part (validate only decides whether
    values are read)."""
    x, y = torch.randn(6, 4), torch.randint(0, 4, (6,))
    with pytest.raises(TypeError, match=r"^weights: must be real numbers, got dtype torch.complex64"):
        class_balanced_loss(x, y, torch.ones(4, dtype=torch.complex64), validate=validate)
    with pytest.raises(TypeError, match=r"^sample_weight: must be real numbers, got dtype torch.complex64"):
        class_balanced_loss(x, y, sample_weight=torch.ones(6, dtype=torch.complex64), validate=validate)


def test_class_count_of_the_buffer_is_checked():
    """Built from counts, a mismatch names the counts; built from weights, the weights."""
    with pytest.raises(ValueError, match=r"^samples_per_class: 5 class counts .* has 4 classes"):
        ClassBalancedLoss(COUNTS, 0.99)(torch.randn(6, 4), torch.randint(0, 4, (6,)))
    with pytest.raises(ValueError, match=r"^weights"):
        ClassBalancedLoss.from_weights(np.ones(5))(torch.randn(6, 4), torch.randint(0, 4, (6,)))


def test_docstring_examples_run_as_pasted():
    from cbloss.adapters import _torch_distributed

    check_examples_run_as_pasted(cbloss.adapters.torch, ("class_balanced_loss", "ClassBalancedLoss"))
    check_examples_run_as_pasted(_torch_distributed, ("all_reduce_counts",))  # exported by cbloss.adapters.torch
