"""Every error case of docs/conventions.md §11: the exception type, and a message that names the argument. NaN in
the logits is not an error: it propagates as NaN (never hidden)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import cbloss
from cbloss import validation
from tests import oracle

Z = np.zeros((3, 4))
Y = np.array([0, 1, 2])


def names(argument: str) -> str:
    """The message starts with the argument's name (the core's convention: ``"<argument>: ..."``)."""
    return rf"^{argument}\b"


# ---------------------------------------------------------------------------------------------------- beta


@pytest.mark.parametrize("beta", [-0.1, 1.0 + 1e-12, 2.0, math.nan, -math.inf, math.inf])
def test_beta_outside_unit_interval(beta):
    with pytest.raises(ValueError, match=names("beta")):
        cbloss.class_balanced_weights([1, 2, 3], beta)
    with pytest.raises(ValueError, match=names("beta")):
        cbloss.effective_number([1, 2, 3], beta)
    with pytest.raises(ValueError, match=names("beta")):
        cbloss.effective_number_recursive([1, 2, 3], beta)
    with pytest.raises(ValueError, match=names("beta")):
        cbloss.ClassBalancedLoss([1, 2, 3], beta)


def test_numbers_beyond_float64_are_named_errors():
    """An integer too large for float64 is out of every range we check: a ValueError naming the argument (not
    Python's OverflowError), and an infinite ignore_index is no integer."""
    with pytest.raises(ValueError, match=names("beta")):
        cbloss.class_balanced_weights([1, 2, 3], 10**400)
    with pytest.raises(ValueError, match=names("gamma")):
        cbloss.class_balanced_loss(Z, Y, loss="focal", gamma=10**400)
    with pytest.raises(ValueError, match=names("samples_per_class")):
        cbloss.class_balanced_weights([10**400, 1], 0.9)
    with pytest.raises(TypeError, match=names("ignore_index")):
        cbloss.class_balanced_loss(Z, Y, ignore_index=math.inf)


def test_beta_not_a_number():
    with pytest.raises(TypeError, match=names("beta")):
        cbloss.class_balanced_weights([1, 2, 3], "0.9")


NOT_REAL = {
    "numpy bool": np.True_,
    "numpy complex": np.complex128(0.5 + 0.5j),
    "numpy complex64": np.complex64(0.1 + 0.5j),
    "0-d bool array": np.array(True),
    "0-d complex array": np.array(0.5 + 0.5j),
}


@pytest.mark.parametrize("value", NOT_REAL.values(), ids=NOT_REAL.keys())
def test_bools_and_complex_numbers_are_no_real_options(value):
    """A bool or complex scalar of NumPy (or a 0-d array) is no real number: float() would read True as 1 and
    0.5+0.5j as 0.5 without a word, as Python's own bool and complex are refused (docs/conventions.md §11.1)."""
    with pytest.raises(TypeError, match=names("beta") + ": must be a real number, got"):
        cbloss.class_balanced_weights([1, 2, 3], value)
    with pytest.raises(TypeError, match=names("gamma") + ": must be a real number, got"):
        cbloss.class_balanced_loss(Z, Y, loss="focal", gamma=value)
    with pytest.raises(TypeError, match=names("label_smoothing") + ": must be a real number, got"):
        cbloss.class_balanced_loss(Z, Y, label_smoothing=value)
    with pytest.raises(TypeError, match=names("ignore_index") + ": must be an integer or None"):
        cbloss.class_balanced_loss(Z, Y, ignore_index=value)


# ---------------------------------------------------------------------------------------------------- counts


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, -math.inf], ids=["negative", "nan", "inf", "-inf"])
def test_counts_negative_nan_inf(bad):
    counts = [10.0, bad, 3.0]
    with pytest.raises(ValueError, match=names("samples_per_class")) as info:
        cbloss.class_balanced_weights(counts, 0.9)
    assert "[1]" in str(info.value)  # names the class
    with pytest.raises(ValueError, match=names("samples_per_class")):
        cbloss.class_balanced_weights(counts, 0.9, zero_count="zero")  # only zero is forgiven
    with pytest.raises(ValueError, match=names("n")):
        cbloss.effective_number(counts, 0.9)


def test_zero_count_names_the_classes():
    with pytest.raises(ValueError, match=names("samples_per_class")) as info:
        cbloss.class_balanced_weights([5, 0, 3, 0], 0.9)
    assert "[1, 3]" in str(info.value) and "zero_count" in str(info.value)
    with pytest.raises(ValueError, match=names("samples_per_class")):
        cbloss.ClassBalancedLoss([5, 0, 3], 0.9)
    w = cbloss.class_balanced_weights([5, 0, 3, 0], 0.9, zero_count="zero")  # allowed on request
    assert w[1] == 0 and w[3] == 0


def test_every_count_zero():
    with pytest.raises(ValueError, match=names("samples_per_class")):
        cbloss.class_balanced_weights([0, 0], 0.9, zero_count="zero")


@pytest.mark.parametrize(("argument", "value"), [("normalize", "mean"), ("zero_count", "ignore")])
def test_unknown_weight_options(argument, value):
    with pytest.raises(ValueError, match=names(argument)):
        cbloss.class_balanced_weights([1, 2], 0.9, **{argument: value})


def test_recursion_needs_integers():
    with pytest.raises(ValueError, match=names("n")):
        cbloss.effective_number_recursive([1.5], 0.5)
    with pytest.raises(ValueError, match=names("n")):
        cbloss.effective_number_recursive([-1], 0.5)


@pytest.mark.parametrize(
    "n, error",
    [([math.nan], ValueError), ([math.inf], ValueError), ([True, 3], TypeError), ([[1, 2], [3]], TypeError)],
    ids=["nan", "inf", "bool", "ragged"],
)
def test_recursion_refuses_what_the_closed_form_refuses(n, error):
    """The recursion checks its counts as effective_number does: the same error type, naming n."""
    for effective in (cbloss.effective_number, cbloss.effective_number_recursive):
        with pytest.raises(error, match=names("n")):
            effective(n, 0.5)


def test_volume_below_one():
    with pytest.raises(ValueError, match=names("volume")):
        cbloss.beta_from_volume(0.5)
    with pytest.raises(ValueError, match=names("volume")):
        cbloss.beta_from_volume(np.array([2.0, 0.5]))


@pytest.mark.parametrize("labels", [[0, 3], [-1, 0]], ids=["too_large", "negative"])
def test_count_labels_out_of_range(labels):
    with pytest.raises(ValueError, match=names("labels")):
        cbloss.count_samples_per_class(labels, 3)
    with pytest.raises(ValueError, match=names("labels")):
        cbloss.count_samples_per_class(iter([np.array([0, 1]), np.array(labels)]), 3)


def test_count_labels_not_integers():
    with pytest.raises(TypeError, match=names("labels")):
        cbloss.count_samples_per_class(np.array([0.0, 1.5]), 3)


_MASKED = r": a NumPy masked array, whose mask would not be honoured"


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("labels", lambda m: cbloss.count_samples_per_class(m(np.array([0, 1, 1, 255])), 3)),
        ("labels", lambda m: cbloss.count_samples_per_class(iter([np.array([0, 1]), m(np.array([1, 255]))]), 3)),
        ("labels", lambda m: cbloss.validate_labels(m(np.array([0, 1, 255])), 3)),
        ("labels", lambda m: cbloss.class_balanced_loss(np.zeros((3, 3)), m(np.array([0, 1, 255])))),
        ("logits", lambda m: cbloss.class_balanced_loss(m(np.zeros((3, 3))), np.array([0, 1, 2]))),
        ("weights", lambda m: cbloss.class_balanced_loss(np.zeros((3, 3)), np.array([0, 1, 2]), m(np.ones(3)))),
        (
            "sample_weight",
            lambda m: cbloss.class_balanced_loss(np.zeros((3, 3)), np.array([0, 1, 2]), sample_weight=m(np.ones(3))),
        ),
        ("samples_per_class", lambda m: cbloss.class_balanced_weights(m(np.array([5.0, 3.0, 1.0])), 0.9)),
        ("samples_per_class", lambda m: cbloss.ClassBalancedLoss(m(np.array([5.0, 3.0, 1.0])), 0.9)),
        ("n", lambda m: cbloss.effective_number(m(np.array([5.0, 3.0, 1.0])), 0.9)),
    ],
)
def test_masked_arrays_are_refused(name, call):
    """NumPy's functions read the values under a mask (a masked label of 255 counted as class 255) or hand back
    masked results (a masked weight: a masked loss): every entry point refuses them, naming the argument
    (docs/conventions.md §11.1), whether the mask hides anything or not."""
    for mask in ([0, 0, 1], [0, 0, 0]):

        def masked(values, mask=mask):
            return np.ma.array(values, mask=np.resize(mask, values.shape))

        with pytest.raises(TypeError, match=rf"^{name}{_MASKED}"):
            call(masked)


@pytest.mark.parametrize(
    ("name", "value", "call"),
    [
        ("beta", 0.9, lambda option: cbloss.class_balanced_weights([5.0, 3.0, 1.0], option)),
        ("gamma", 2.0, lambda option: cbloss.class_balanced_loss(Z, Y, loss="focal", gamma=option)),
        ("label_smoothing", 0.1, lambda option: cbloss.class_balanced_loss(Z, Y, label_smoothing=option)),
        ("ignore_index", 1, lambda option: cbloss.class_balanced_loss(Z, Y, ignore_index=option)),
    ],
)
@pytest.mark.parametrize("hidden", [False, True], ids=["unmasked", "masked"])
def test_masked_scalars_are_refused_as_options(name, value, call, hidden):
    """A 0-d masked array as an option: refused like masked arrays elsewhere, not read as its value (mask False)
    or as NaN, or NumPy's MaskError for ignore_index (mask True)."""
    with pytest.raises(TypeError, match=rf"^{name}{_MASKED}"):
        call(np.ma.array(value, mask=hidden))


# ---------------------------------------------------------------------------------------------------- losses


@pytest.mark.parametrize("n_weights", [3, 5])
def test_wrong_number_of_weights(asarray, n_weights):
    with pytest.raises(ValueError, match=names("weights")):
        cbloss.class_balanced_loss(asarray(Z), asarray(Y), asarray(np.ones(n_weights)))
    with pytest.raises(ValueError, match=names("weights")):
        cbloss.ClassBalancedLoss.from_weights(np.ones(n_weights))(Z, Y)


def test_weights_not_a_vector():
    with pytest.raises(ValueError, match=names("weights")):
        cbloss.class_balanced_loss(Z, Y, np.ones((4, 1)))


@pytest.mark.parametrize(
    ("labels", "ignore_index"),
    [([0, 4, 1], None), ([0, -1, 1], None), ([0, -1, 1], -100), ([0, 7, -100], -100)],
    ids=["too_large", "negative", "negative_not_ignored", "too_large_beside_ignored"],
)
def test_labels_out_of_range(asarray, labels, ignore_index):
    with pytest.raises(ValueError, match=r"^labels: class indices must be in \[0, 4\)"):
        cbloss.class_balanced_loss(asarray(Z), asarray(np.array(labels)), ignore_index=ignore_index)


def test_unbatched_label_out_of_range():
    with pytest.raises(ValueError, match=r"^labels: class indices must be in \[0, 4\)"):
        cbloss.class_balanced_loss(np.zeros(4), np.array(4))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_])
def test_logits_not_floating_point(asarray, dtype):
    with pytest.raises(TypeError, match=names("logits")):
        cbloss.class_balanced_loss(asarray(Z.astype(dtype)), asarray(Y))


@pytest.mark.parametrize(
    "labels",
    [np.array([0, 1]), np.array([[0, 1, 2]]), np.zeros((3, 3)) + 1 / 3, np.zeros((3, 4, 1))],
    ids=["fewer_positions", "extra_dim", "soft_wrong_classes", "soft_extra_dim"],
)
def test_labels_and_logits_shapes_do_not_match(asarray, labels):
    with pytest.raises(ValueError, match=r"^labels: (class indices|soft targets) must have the logits' shape"):
        cbloss.class_balanced_loss(asarray(Z), asarray(labels))


@pytest.mark.parametrize("axis", [1.0, "1", True, None], ids=repr)
def test_axis_not_an_integer(axis):
    """A float axis is rejected, not truncated; a bool is no axis either."""
    with pytest.raises(TypeError, match=names("axis") + ": must be an integer"):
        cbloss.class_balanced_loss(Z, Y, axis=axis)
    with pytest.raises(TypeError, match=names("axis") + ": must be an integer"):
        cbloss.ClassBalancedLoss([1, 2, 3, 4], 0.9, axis=axis)


@pytest.mark.parametrize("validate", ["no", None, 2, 1, 0, np.array([True])], ids=repr)
def test_validate_is_a_bool(validate):
    """A flag is True or False (NumPy's bools too): 1 and an array are not (an array would compare elementwise)."""
    with pytest.raises(ValueError, match=names("validate")):
        cbloss.class_balanced_loss(Z, Y, validate=validate)
    assert validation.check_choice("validate", np.True_, (True, False)) is True
    assert type(validation.check_choice("reduction", np.str_("sum"), ("sum", "mean"))) is str


def test_a_tiny_negative_weight_is_refused_after_rounding_to_minus_zero(asarray):
    """Array weights are checked as cast to the compute dtype, where -1e-50 is -0.0: read as given, it is still a
    negative weight; -0.0 given as such is not."""
    logits, labels = asarray(np.zeros((2, 3), np.float32)), asarray(np.array([0, 2]))
    with pytest.raises(ValueError, match=r"^weights: must be finite and >= 0"):
        cbloss.class_balanced_loss(logits, labels, asarray(np.array([-1e-50, 1.0, 1.0])))
    value = cbloss.class_balanced_loss(logits, labels, asarray(np.array([-0.0, 1.0, 1.0])), reduction="sum")
    assert float(value) == pytest.approx(math.log(3.0), rel=1e-6)


@pytest.mark.parametrize("value", [np.array(["sum"]), ["sum"], b"sum", 1], ids=repr)
@pytest.mark.parametrize("argument", ["loss", "reduction", "multi_label", "normalize"])
def test_a_choice_is_a_string_not_an_array_of_one(argument, value):
    call = cbloss.class_balanced_weights if argument == "normalize" else cbloss.class_balanced_loss
    args = ([1, 2, 3], 0.9) if argument == "normalize" else (Z, Y)
    with pytest.raises(ValueError, match=names(argument) + ": must be one of"):
        call(*args, **{argument: value})


def test_logits_without_classes():
    """A class axis of length 0 has no loss to compute (no class to normalise over): an error naming logits."""
    for shape, labels in (((0, 0), np.zeros(0, np.int64)), ((2, 0), np.zeros(2, np.int64)), ((2, 0), np.zeros((2, 0)))):
        with pytest.raises(ValueError, match=names("logits") + r": the class axis \(1\) must hold at least one"):
            cbloss.class_balanced_loss(np.zeros(shape), labels, label_smoothing=0.1)
    assert float(cbloss.class_balanced_loss(np.zeros((0, 3)), np.zeros(0, np.int64), label_smoothing=0.1)) == 0.0


def test_axis_out_of_range():
    with pytest.raises(ValueError, match=names("axis")):
        cbloss.class_balanced_loss(Z, Y, axis=2)


@pytest.mark.parametrize(("argument", "value"), [("loss", "hinge"), ("loss", "Softmax"), ("reduction", "avg")])
def test_unknown_loss_or_reduction(asarray, argument, value):
    with pytest.raises(ValueError, match=names(argument)):
        cbloss.class_balanced_loss(asarray(Z), asarray(Y), **{argument: value})
    with pytest.raises(ValueError, match=names(argument)):
        cbloss.ClassBalancedLoss([1, 2, 3, 4], 0.9, **{argument: value})


@pytest.mark.parametrize("loss", ["focal", "softmax_focal"])
@pytest.mark.parametrize("gamma", [-0.5, -1e-300, math.nan])
def test_gamma_negative(loss, gamma):
    with pytest.raises(ValueError, match=names("gamma")):
        cbloss.class_balanced_loss(Z, Y, loss=loss, gamma=gamma)
    with pytest.raises(ValueError, match=names("gamma")):
        cbloss.ClassBalancedLoss([1, 2, 3, 4], 0.9, loss=loss, gamma=gamma)


@pytest.mark.parametrize("loss", ["softmax", "sigmoid"])
def test_gamma_with_a_non_focal_loss(loss):
    with pytest.raises(ValueError, match=names("gamma")) as info:
        cbloss.class_balanced_loss(Z, Y, loss=loss, gamma=2.0)
    assert loss in str(info.value)


@pytest.mark.parametrize("eps", [-0.1, 1.5, math.nan])
def test_label_smoothing_outside_unit_interval(eps):
    with pytest.raises(ValueError, match=names("label_smoothing")):
        cbloss.class_balanced_loss(Z, Y, label_smoothing=eps)


@pytest.mark.parametrize("ignore_index", [1.5, 2.0, np.float32(2.0), np.array(2.0), np.array([2])], ids=repr)
def test_ignore_index_not_an_integer(ignore_index):
    """A float is not truncated (as axis), and an array with axes is no scalar, whatever it holds."""
    with pytest.raises(TypeError, match=names("ignore_index")):
        cbloss.class_balanced_loss(Z, Y, ignore_index=ignore_index)


@pytest.mark.parametrize("option", ["gamma", "label_smoothing"])
@pytest.mark.parametrize("shape", [(1,), (1, 1)])
def test_real_options_given_as_arrays_with_axes(option, shape):
    with pytest.raises(TypeError, match=rf"^{option}: must be a real number \(a scalar\), got an array of shape"):
        cbloss.class_balanced_loss(Z, Y, loss="focal", **{option: np.full(shape, 0.1)})


@pytest.mark.parametrize(
    "targets",
    [
        [[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0]],  # multi-hot
        [[0.5, 0.2, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0]],  # sums to 0.7
    ],
    ids=["multi_hot", "sums_below_one"],
)
def test_soft_targets_must_sum_to_one(asarray, targets):
    with pytest.raises(ValueError, match=names("labels")) as info:
        cbloss.class_balanced_loss(asarray(Z), asarray(np.array(targets, dtype=np.float64)))
    assert "multi-hot targets need multi_label=" in str(info.value)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8])
def test_integer_multi_hot_targets_without_multi_label_say_how(dtype):
    """Integer 0/1 targets shaped like the logits are multi-hot, not class indices: the error says which option
    reads them."""
    targets = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=dtype)
    with pytest.raises(ValueError, match=names("labels")) as info:
        cbloss.class_balanced_loss(Z, targets, loss="sigmoid")
    assert "multi-hot targets need multi_label='class' or 'sample'" in str(info.value)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
@pytest.mark.parametrize("multi_label", ["class", "sample"])
@pytest.mark.parametrize("loss", ["sigmoid", "focal"])
def test_integer_and_bool_multi_hot_targets_are_read_as_zeros_and_ones(asarray, dtype, multi_label, loss):
    """Multi-hot targets given as integers or bools give the loss and gradient of the same 0/1 floats (§6.5)."""
    logits = np.random.default_rng(5).normal(size=(3, 4)) * 2
    targets = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
    weights = np.array([0.5, 1.0, 2.0, 4.0])
    want = oracle.loss_and_grad(logits, targets.astype(float), weights, loss=loss, multi_label=multi_label)
    got = cbloss.class_balanced_loss_and_grad(
        asarray(logits), asarray(targets.astype(dtype)), asarray(weights), loss=loss, multi_label=multi_label
    )
    np.testing.assert_allclose(np.asarray(got[0]), want.value, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(got[1]), want.grad, rtol=1e-9, atol=1e-15)


def test_soft_targets_negative():
    with pytest.raises(ValueError, match=names("labels")):
        cbloss.class_balanced_loss(Z, np.array([[1.5, -0.5, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0.0]]))


# ---------------------------------------------------------------------------------------------------- NaN


@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "weighted_mean"])
@pytest.mark.parametrize("loss", ["softmax", "sigmoid", "focal", "softmax_focal"])
def test_nan_logits_propagate(asarray, loss, reduction):
    z = np.array([[0.5, np.nan, -1.0, 2.0], [0.5, 1.0, -1.0, 2.0], [3.0, 0.0, 1.0, -2.0]])
    value, grad = cbloss.class_balanced_loss_and_grad(
        asarray(z), asarray(Y), asarray(np.array([1.0, 2.0, 0.5, 1.5])), loss=loss, reduction=reduction
    )
    value, grad = _to_numpy(value), _to_numpy(grad)
    assert np.isnan(grad[0, 1])  # the NaN logit's own gradient
    if loss.startswith("softmax"):
        assert np.all(np.isnan(grad[0]))  # every class of the position depends on it through the softmax
    if reduction == "none":
        assert np.isnan(value[0]) and np.all(np.isfinite(value[1:]))
        assert np.all(np.isfinite(grad[1:]))
    else:
        assert np.isnan(value)


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("loss", ["softmax", "sigmoid", "focal", "softmax_focal"])
def test_nan_logits_at_an_ignored_position_are_not_hidden(asarray, loss, reduction):
    """An ignored position's logits are still evaluated (docs/conventions.md §6.4): a NaN among them makes its
    value and gradient NaN, the other positions are unaffected."""
    z = np.array([[0.5, 1.0, -1.0, 2.0], [np.nan, 0.0, 0.0, 0.0], [3.0, 0.0, 1.0, -2.0]])
    labels = np.array([0, -100, 2])
    value, grad = cbloss.class_balanced_loss_and_grad(
        asarray(z),
        asarray(labels),
        asarray(np.array([1.0, 2.0, 0.5, 1.5])),
        loss=loss,
        reduction=reduction,
        ignore_index=-100,
    )
    value, grad = _to_numpy(value), _to_numpy(grad)
    assert np.isnan(grad[1, 0]) and np.all(np.isfinite(grad[[0, 2]]))
    if reduction == "none":
        assert np.isnan(value[1]) and np.all(np.isfinite(value[[0, 2]]))
    else:
        assert np.isnan(value)


def _to_numpy(x):
    return np.asarray(x) if isinstance(x, (np.ndarray, np.generic, float)) else np.from_dlpack(x)


@pytest.mark.parametrize("bad", [[1.0, -0.5, 1.0], [1.0, np.nan, 1.0], [1.0, np.inf, 1.0]], ids=["neg", "nan", "inf"])
def test_given_weights_must_be_finite_and_non_negative(bad):
    """The one check every entry point shares (core function, neutral module; adapters call the same)."""
    logits, labels = np.zeros((2, 3)), np.array([0, 2])
    with pytest.raises(ValueError, match=r"^weights: must be finite and >= 0"):
        cbloss.class_balanced_loss(logits, labels, bad)
    with pytest.raises(ValueError, match=r"^weights: must be finite and >= 0"):
        cbloss.ClassBalancedLoss.from_weights(bad)


@pytest.mark.parametrize("given", ["list", "array"])
@pytest.mark.parametrize("argument", ["weights", "sample_weight"])
def test_weights_beyond_float32_are_named_where_the_loss_is_float32(asarray, given, argument):
    """Weights finite as given but beyond float32's range would be inf in a float32 loss: an error naming the
    argument, whether they are given on the host or as an array (checked as cast). A float64 loss holds them."""
    labels, big = asarray(np.array([0, 1])), [1.0, 1e39, 1.0] if argument == "weights" else [1e39, 1.0]
    values = big if given == "list" else asarray(np.asarray(big))

    def loss(dtype):
        kwargs = {"weights": values} if argument == "weights" else {"sample_weight": values}
        return cbloss.class_balanced_loss(asarray(np.zeros((2, 3), dtype)), labels, **kwargs, reduction="sum")

    with pytest.raises(ValueError, match=names(argument) + r": must be at most 3.402823e\+38 \(float32's largest"):
        loss(np.float32)
    assert float(loss(np.float64)) == pytest.approx(1e39 * math.log(3.0), rel=1e-12)


NOT_REAL = {
    "None": lambda values: [None, *values[1:]],
    "complex": lambda values: [complex(v, 1.0) for v in values],
    "complex-zero-imaginary": lambda values: np.asarray(values, dtype=np.complex128),
    "strings": lambda values: [str(v) for v in values],
    "bools": lambda values: [v > 0 for v in values],
    "bool-array": lambda values: np.asarray(values) > 0,
}
REAL_ARGUMENTS = {
    "samples_per_class": lambda bad: cbloss.class_balanced_weights(bad, 0.9),
    "n": lambda bad: cbloss.effective_number(bad, 0.9),
    "weights": lambda bad: cbloss.class_balanced_loss(np.zeros((3, 3)), np.array([0, 1, 2]), bad),
    "weights ": lambda bad: cbloss.ClassBalancedLoss.from_weights(bad),
    "sample_weight": lambda bad: cbloss.class_balanced_loss(np.zeros((3, 3)), np.array([0, 1, 2]), sample_weight=bad),
}


@pytest.mark.parametrize("make", NOT_REAL.values(), ids=NOT_REAL.keys())
@pytest.mark.parametrize(("argument", "call"), REAL_ARGUMENTS.items(), ids=REAL_ARGUMENTS.keys())
def test_counts_and_weights_must_be_real_numbers(argument, call, make):
    """Counts, class weights and sample weights are real numbers: a complex value (even with a zero imaginary
    part) is a TypeError naming the argument, not a cast that drops the imaginary part with a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match=names(argument.strip()) + ": must be real numbers"):
            call(make([1.0, 2.0, 3.0]))


def test_given_weights_must_be_one_dimensional():
    with pytest.raises(ValueError, match=r"^weights: expected a non-empty 1-D sequence, got shape \(0,\)"):
        cbloss.ClassBalancedLoss.from_weights([])
    with pytest.raises(ValueError, match=r"^weights: expected a non-empty 1-D sequence"):
        cbloss.ClassBalancedLoss.from_weights([[1.0, 2.0]])
    with pytest.raises(ValueError, match=r"^weights: expected 3 class weights"):
        cbloss.class_balanced_loss(np.zeros((2, 3)), np.array([0, 2]), [1.0, 2.0])


# ---------------------------------------------------------------------------------------------------- label dtypes


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16", "int32"])
@pytest.mark.parametrize("loss", ["softmax", "sigmoid", "focal", "softmax_focal"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_any_integer_label_dtype_gives_the_int64_result(asarray, dtype, loss, label_smoothing):
    """A label dtype too narrow to count the classes (C = 300 > 2**8) must not wrap: class k is never also class
    k + 2**bits (docs/conventions.md §6.1)."""
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(5, 300))
    high = min(300, np.iinfo(dtype).max + 1)
    labels = rng.integers(0, high, size=5)
    labels[0] = high - 1
    want = cbloss.class_balanced_loss_and_grad(logits, labels, loss=loss, label_smoothing=label_smoothing)
    got = cbloss.class_balanced_loss_and_grad(
        asarray(logits), asarray(labels.astype(dtype)), loss=loss, label_smoothing=label_smoothing
    )
    np.testing.assert_array_equal(np.asarray(got[0]), want[0])
    np.testing.assert_array_equal(np.asarray(got[1]), want[1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_float_class_indices_are_reported_as_not_integers(asarray, dtype):
    with pytest.raises(TypeError, match=r"^labels: class indices must be integers, got dtype .*float"):
        cbloss.class_balanced_loss(asarray(Z), asarray(np.array([0.0, 1.0, 2.0], dtype=dtype)))


def test_python_numbers_and_lists_are_arrays():
    z = [[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]]
    want = cbloss.class_balanced_loss(np.array(z), np.array([0, 2]), loss="focal")
    assert cbloss.class_balanced_loss(z, [0, 2], loss="focal") == want
    unbatched = cbloss.class_balanced_loss(np.array(z[0]), np.array(1))
    assert cbloss.class_balanced_loss(z[0], 1) == unbatched


@pytest.mark.parametrize(
    "argument, call",
    [
        ("labels", lambda: cbloss.class_balanced_loss(Z, [True, 2, 0])),
        ("labels", lambda: cbloss.class_balanced_loss(Z, [[0, 1, 0, 0], [1, 0, 0, 0], (0, 0, True, 0)])),
        ("logits", lambda: cbloss.class_balanced_loss([[True, 0.5, 0.0, 0.0]] * 3, Y)),
        ("weights", lambda: cbloss.class_balanced_loss(Z, Y, [True, 2.0, 1.0, 1.0])),
        ("sample_weight", lambda: cbloss.class_balanced_loss(Z, Y, sample_weight=[1.0, False, 2.0])),
        ("samples_per_class", lambda: cbloss.class_balanced_weights([True, 5, 7], 0.9)),
        ("labels", lambda: cbloss.count_samples_per_class([0, True, 2], 3)),
    ],
)
def test_lists_that_mix_bools_with_numbers_are_refused(argument, call):
    """NumPy reads ``[True, 2]`` as ``[1, 2]``: a bool among numbers in a Python list is a TypeError naming the
    argument, as a bool array is (docs/conventions.md §11.1), never a silent 1 or 0."""
    with pytest.raises(TypeError, match=rf"^{argument}: .*bool"):
        call()


@pytest.mark.parametrize("argument, logits, labels", [("logits", "zz", Y), ("labels", Z, object()), ("labels", Z, "a")])
def test_non_numeric_inputs_name_the_argument(argument, logits, labels):
    with pytest.raises(TypeError, match=names(argument)):
        cbloss.class_balanced_loss(logits, labels)


@pytest.mark.parametrize(
    "dtype, ignore_index",
    [("uint8", 256), ("int8", 257), ("int8", -255), ("uint16", 65536), ("int16", 65538), ("int32", 2**32 + 1)],
)
@pytest.mark.parametrize("loss", ["softmax", "focal"])
def test_ignore_index_beyond_the_label_dtype(asarray, dtype, ignore_index, loss):
    """An ignore_index that the labels' dtype cannot hold ignores nothing: converted into that dtype it would wrap
    onto a label that is present (256 onto 0 in uint8, 257 onto 1 in int8, ...) and drop it (§6.1, §6.4)."""
    logits = np.random.default_rng(3).normal(size=(3, 4)) * 2
    labels = np.array([0, 1, 2])
    want = oracle.loss_and_grad(logits, labels, loss=loss, reduction="mean")
    got = cbloss.class_balanced_loss_and_grad(
        asarray(logits), asarray(labels.astype(dtype)), loss=loss, ignore_index=ignore_index
    )
    np.testing.assert_allclose(np.asarray(got[0]), want.value, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(got[1]), want.grad, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("loss", ["softmax", "focal"])
@pytest.mark.parametrize("label", [2**63, 2**64 - 1])
def test_uint64_labels_beyond_int64_are_out_of_range(asarray, label, loss):
    """A uint64 label that int64 cannot hold is out of range, never wrapped to a negative index that could equal
    ignore_index (2**64 - 1 is -1 in int64) and be dropped (§6.1)."""
    labels = asarray(np.array([0, label, 2], np.uint64))
    message = r"^labels: class indices must be in \[0, 4\), got \[9223372036854775807\]"
    for ignore_index in (None, -1, -(2**63)):
        with pytest.raises(ValueError, match=message):
            cbloss.class_balanced_loss(asarray(np.zeros((3, 4))), labels, loss=loss, ignore_index=ignore_index)
    # with ignore_index at int64's largest value, the stand-in is int64's smallest: reported, never ignored
    with pytest.raises(ValueError, match=r"^labels: class indices must be in \[0, 4\), got \[-9223372036854775808\]"):
        cbloss.class_balanced_loss(asarray(np.zeros((3, 4))), labels, loss=loss, ignore_index=2**63 - 1)
    narrowed = validation.wide_class_indices(np, np.array([0, label, 2**63 - 1, 3], np.uint64), np.int64)
    assert narrowed.dtype == np.int64 and narrowed.tolist() == [0, 2**63 - 1, 2**63 - 1, 3]
    assert validation.wide_class_indices(np, np.array([7, 2**32 - 1], np.uint32), np.int32).tolist() == [7, 2**31 - 1]
    kept = validation.wide_class_indices(np, np.array([0, label], np.uint64), np.int64, ignore_index=2**63 - 1)
    assert kept.tolist() == [0, -(2**63)]


@pytest.mark.parametrize("loss", ["focal", "softmax_focal"])
def test_gamma_beyond_the_compute_dtype_is_named(asarray, loss):
    """gamma above float32's largest value with float32 logits is named, as such a weight is: the gradient's
    gamma * r * u would be inf where it is 0, NaN after the product (§9). float64 logits hold it."""
    logits, labels = np.array([[3.0, -2.0, 0.5]]), asarray(np.array([0]))
    with pytest.raises(ValueError, match=r"^gamma: must be at most 3.402823e\+38 \(float32's largest"):
        cbloss.class_balanced_loss_and_grad(asarray(logits.astype(np.float32)), labels, loss=loss, gamma=1e39)
    value, grad = cbloss.class_balanced_loss_and_grad(asarray(logits), labels, loss=loss, gamma=1e39)
    assert float(value) == 0.0 and np.all(np.isfinite(np.asarray(grad)))
    value, grad = cbloss.class_balanced_loss_and_grad(asarray(logits.astype(np.float32)), labels, loss=loss, gamma=3e38)
    assert np.all(np.isfinite(np.asarray(grad)))


@pytest.mark.parametrize("ignore_index", [2**70, 2**63, -(2**63) - 1], ids=["2**70", "2**63", "-2**63-1"])
def test_ignore_index_beyond_int64_is_named(ignore_index):
    """int64 ends at 2**63 - 1 and starts at -2**63: one past either end is refused, not wrapped."""
    with pytest.raises(ValueError, match=names("ignore_index") + ": must fit in int64"):
        cbloss.class_balanced_loss(Z, np.array([0, 1, 2], dtype=np.int8), ignore_index=ignore_index)


def test_weights_just_beyond_float32_are_named_where_the_loss_is_float32():
    """5e38 is beyond float32's largest (3.4e38) by less than 2x: refused for a float32 loss (it would be inf)."""
    with pytest.raises(ValueError, match=r"^weights: must be at most 3.402823e\+38"):
        cbloss.class_balanced_loss(np.zeros((2, 2), np.float32), np.array([0, 1]), [1.0, 5e38], reduction="sum")


@pytest.mark.parametrize("axis", [-1, 1])
def test_a_module_built_from_too_few_counts_blames_the_counts(axis):
    """A neutral module built from 4 class counts, called on logits with 5 classes (class axis given as -1 or 1):
    the error names samples_per_class, what the user passed, not the weights made from it."""
    loss = cbloss.ClassBalancedLoss([10, 20, 30, 40], 0.9, axis=axis)
    with pytest.raises(ValueError, match=rf"^samples_per_class: 4 class counts .* class axis \({axis}\) has 5"):
        loss(np.zeros((2, 5)), np.array([0, 1]))
