"""The traced rules (``traced_label_checks``, ``traced_checks``) agree with the eager checks
(``check_label_values``): the same inputs fail, with the same message up to the value found."""

from __future__ import annotations

import re

import numpy as np
import pytest

import cbloss
from cbloss import validation

CLASS_INDICES = [
    ([0, 1, 2], None, None),
    ([[0, 2], [1, 1]], None, None),
    ([0, 3, 1], None, 3),
    ([0, -100, 2], -100, None),
    ([0, -1, 2], None, -1),
    ([0, 2, -100], 2, -100),
]


def _failures(xp, labels, num_classes, soft, ignore_index, tolerance, multi_label=False) -> list[str]:
    rules = validation.traced_label_checks(xp, labels, num_classes, soft, ignore_index, tolerance, multi_label)
    return [rule.message.format(*(value.item() for value in rule.values)) for rule in rules if not bool(rule.valid)]


def _eager_error(xp, labels, num_classes, soft, ignore_index, multi_label=False) -> str | None:
    try:
        validation.check_label_values(xp, labels, num_classes, soft, ignore_index, multi_label=multi_label)
    except ValueError as error:
        return str(error)
    return None


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64])
@pytest.mark.parametrize(("labels", "ignore_index", "found"), CLASS_INDICES)
def test_class_indices(labels, ignore_index, found, dtype):
    labels = np.asarray(labels, dtype)
    failures = _failures(np, labels, 3, False, ignore_index, 0.0)
    eager = _eager_error(np, labels, 3, False, ignore_index)
    if found is None:
        assert failures == [] and eager is None
    else:
        assert failures == [f"labels: class indices must be in [0, 3), got {found}"]
        assert eager == f"labels: class indices must be in [0, 3), got [{found}]"


SOFT_TARGETS = [
    ([[0.25, 0.75], [1.0, 0.0]], None),
    ([[0.5, 0.75], [1.0, 0.0]], "labels: soft targets must sum to 1 along the class axis, off by up to 0.25"),
    ([[0.5, 0.4], [1.0, 0.0]], "labels: soft targets must sum to 1 along the class axis, off by up to 0.1"),
    ([[0.5, 0.55], [1.0, 0.0]], "labels: soft targets must sum to 1 along the class axis, off by up to 0.05"),
    ([[-0.5, 1.5], [1.0, 0.0]], "labels: soft targets must be finite probabilities >= 0 (found negative or NaN)"),
    ([[np.nan, 1.0], [1.0, 0.0]], "labels: soft targets must be finite probabilities >= 0 (found negative or NaN)"),
]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize(("targets", "message"), SOFT_TARGETS)
def test_soft_targets(targets, message, dtype):
    targets = np.asarray(targets, dtype)
    tolerance = validation.soft_target_tolerance(np, targets.dtype)
    failures = _failures(np, targets, 2, True, None, tolerance)
    eager = _eager_error(np, targets, 2, True, None)
    if message is None:
        assert failures == [] and eager is None
        return
    # The traced rules report every rule that fails; the eager check raises on the first.
    rule, _, value = message.partition(", off by up to ")
    assert re.sub(r", off by up to .*", "", failures[0]) == rule
    assert eager is not None and eager.startswith(rule)
    if value:
        assert float(failures[0].rpartition(" ")[2]) == pytest.approx(float(value), rel=1e-2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize(
    ("targets", "valid"),
    [([[0, 1], [1, 1]], True), ([[0, 2], [1, 1]], False), ([[0, -1], [1, 1]], False), ([[]], True)],
)
def test_multi_hot(targets, valid, dtype):
    targets = np.asarray(targets, dtype)
    failures = _failures(np, targets, 2, False, None, 0.0, multi_label=True)
    eager = _eager_error(np, targets, 2, False, None, multi_label=True)
    expected = "labels: multi-hot targets must be in [0, 1] (found a value outside, or NaN)"
    assert failures == ([] if valid else [expected])
    assert eager == (None if valid else expected)


def test_multi_hot_nan_and_bool():
    expected = "labels: multi-hot targets must be in [0, 1] (found a value outside, or NaN)"
    assert _failures(np, np.array([[np.nan, 1.0]]), 2, True, None, 0.0, multi_label=True) == [expected]
    assert validation.traced_label_checks(np, np.array([[True, False]]), 2, False, None, 0.0, True) == []


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_class_indices_report_the_largest_offending_label(dtype):
    labels = np.asarray([[7, 0, -3], [2, 12, -100]], dtype)
    assert _failures(np, labels, 3, False, -100, 0.0) == ["labels: class indices must be in [0, 3), got 12"]
    assert _failures(np, labels[:, 2:], 3, False, -100, 0.0) == ["labels: class indices must be in [0, 3), got -3"]


@pytest.mark.parametrize(("shape", "soft"), [((0,), False), ((2, 0), False), ((0, 3), True)])
def test_no_labels_have_no_checks(shape, soft):
    labels = np.zeros(shape, np.float32 if soft else np.int64)
    assert validation.traced_label_checks(np, labels, 3, soft, None, 1e-3) == []


@pytest.mark.parametrize(
    "labels, kwargs, message",
    [
        ([0, 2, -100], dict(ignore_index=-100), None),
        ([[0, 3]], {}, r"class indices must be in \[0, 3\), got \[3\]"),
        # soft targets with the class axis first, inferred from the dtype: each column sums to 1
        ([[0.5, 1.0], [0.5, 0.0], [0.0, 0.0]], dict(axis=0), None),
        ([[0.5, 0.6], [0.5, 0.0], [0.0, 0.0]], dict(axis=0), "soft targets must sum to 1"),
        ([[0.5, 0.5, 0.0]], dict(axis=-1, multi_label=True), None),
        ([[1.5, 0.0, 0.0]], dict(multi_label=True), r"multi-hot targets must be in \[0, 1\]"),
        # the loss option's values say the same
        ([[1.0, 0.0, 1.0]], dict(multi_label="class"), None),
        ([[1.5, 0.0, 0.0]], dict(multi_label="sample"), r"multi-hot targets must be in \[0, 1\]"),
        ([[1, 0, 3]], dict(multi_label=None), r"class indices must be in \[0, 3\), got \[3\]"),
        # an empty sequence holds no labels (NumPy would make it float64, which reads as soft targets)
        ([], {}, None),
        ([], dict(soft=True), r"soft targets must have 3 entries along axis -1, got shape \(0,\)"),
        # targets' class axis holds num_classes entries
        ([[0.5, 0.5]], {}, r"soft targets must have 3 entries along axis -1, got shape \(1, 2\)"),
        ([[1.0, 0.0, 1.0]], dict(axis=0, multi_label=True), r"multi-hot targets must have 3 entries along axis 0"),
        ([0.5, 0.5, 0.0], dict(axis=1), r"soft targets must have 3 entries along axis 1, got shape \(3,\)"),
        # class indices given as floats, as Keras hands them over: whole numbers in range, or ignore_index
        ([0.0, 2.0, -100.0], dict(soft=False, ignore_index=-100), None),
        ([0.0, 2.5], dict(soft=False), r"class indices must be integers, got \[2.5\]"),
        ([0.0, np.nan, -np.inf], dict(soft=False), r"class indices must be integers, got \[-inf, nan\]"),
        ([0.0, 3.0], dict(soft=False), r"class indices must be in \[0, 3\), got \[3\]"),
        ([0.0, 1e30, -1e19], dict(soft=False), r"class indices must be in \[0, 3\), got \[-1e\+19, 1e\+30\]"),
    ],
)
def test_validate_labels_reads_any_layout(labels, kwargs, message):
    """Labels given as a sequence, class indices or targets along ``axis``, checked with the core's rules."""
    options = dict(ignore_index=None, soft=None, axis=-1, multi_label=False) | kwargs
    if message is None:
        cbloss.validate_labels(labels, 3, **options)
    else:
        with pytest.raises(ValueError, match=r"^labels: " + message):
            cbloss.validate_labels(labels, 3, **options)


@pytest.mark.parametrize("given_dtype, passes", [(np.float32, True), (np.float64, False)])
@pytest.mark.parametrize("values", [None, [1.0, 0.5], [1.0, np.nan], [-1.0, 2.0], [1.0, np.inf]])
@pytest.mark.parametrize("which", ["weights", "sample_weight"])
def test_traced_checks_read_the_given_dtype_and_the_weights(given_dtype, passes, values, which):
    """``traced_checks``: soft targets off by 1e-5 pass the sum rule to float32's tolerance (sqrt(eps), 3.5e-4) and
    fail float64's (1.5e-8): the tolerance is that of the dtype they are given in; class and sample weights, as
    computed, must be finite and >= 0."""
    from cbloss.options import loss_options

    targets = np.array([[0.5, 0.5 + 1e-5], [1.0, 0.0]], given_dtype)
    weights = None if values is None else np.asarray(values)
    rules = validation.traced_checks(np, targets, 2, True, loss_options(), **{which: weights})
    failures = [rule.message.split(",")[0] for rule in rules if not bool(rule.valid)]
    expected = [] if passes else ["labels: soft targets must sum to 1 along the class axis"]
    if weights is not None and not np.all(np.isfinite(weights) & (weights >= 0)):
        expected.append(
            f"{which}: must be finite and >= 0 in the compute dtype (where a weight beyond its range is inf)"
        )
    assert failures == expected
    assert len(rules) == 2 + (weights is not None)


@pytest.mark.parametrize("labels", [["a", "b"], [[0, 1], [2]], None])
def test_validate_labels_names_what_is_not_numbers(labels):
    with pytest.raises(TypeError, match=r"^labels: must be an array or a"):
        cbloss.validate_labels(labels, 3)


@pytest.mark.parametrize(
    "labels",
    [np.array(["a", "b"]), np.array([0, [1, 2]], dtype=object), np.array([0, 1j])],
    ids=["strings", "objects", "complex"],
)
def test_validate_labels_names_arrays_that_are_not_real_numbers(labels):
    with pytest.raises(TypeError, match=r"^labels: must be class indices or targets \(real numbers\), got dtype"):
        cbloss.validate_labels(labels, 3)


@pytest.mark.parametrize("soft", [None, False])
def test_validate_labels_refuses_bool_labels_as_the_losses_do(soft):
    """Bool labels are neither class indices nor soft targets (the losses raise the same TypeError); with
    ``multi_label`` they are multi-hot targets."""
    labels = np.array([[True, False, True]])
    with pytest.raises(TypeError, match=r"^labels: must be integer class indices or floating soft targets, got bool"):
        cbloss.validate_labels(labels, 3, soft=soft)
    with pytest.raises(TypeError, match=r"got bool"):
        cbloss.class_balanced_loss(np.zeros((1, 3)), labels)
    cbloss.validate_labels(labels, 3, multi_label=True)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(num_classes=None), TypeError, r"^num_classes: must be a positive integer"),
        (dict(num_classes=3.9), TypeError, r"^num_classes: must be a positive integer"),
        (dict(num_classes="3"), TypeError, r"^num_classes: must be a positive integer"),
        (dict(num_classes=True), TypeError, r"^num_classes: must be a positive integer"),
        (dict(num_classes=0), ValueError, r"^num_classes: must be a positive integer"),
        (dict(axis=1.0), TypeError, r"^axis: must be an integer"),
        (dict(ignore_index="x"), TypeError, r"^ignore_index: must be an integer or None"),
        (dict(ignore_index=np.array([5, 7])), TypeError, r"^ignore_index: must be an integer or None"),
        (dict(soft="False"), ValueError, r"^soft: must be one of \[None, True, False\]"),
        (dict(multi_label="False"), ValueError, r"^multi_label: must be one of \[True, False, None, 'class'"),
    ],
)
def test_validate_labels_checks_its_own_arguments(kwargs, error, message):
    """Each argument is checked like the losses' own (a string "False" would otherwise switch rules)."""
    arguments = dict(num_classes=3) | kwargs
    with pytest.raises(error, match=message):
        cbloss.validate_labels(np.array([0, 1]), **arguments)


def test_a_float_label_at_2_63_is_out_of_range_not_the_ignored_value():
    """2.0**63 is beyond int64, whose cast would wrap it to -2**63: with that as ignore_index the label would be
    ignored silently. It is out of range."""
    with pytest.raises(ValueError, match=r"^labels: class indices must be in \[0, 3\), got \[9.22"):
        cbloss.validate_labels(np.array([0.0, 2.0**63]), 3, soft=False, ignore_index=-(2**63))
