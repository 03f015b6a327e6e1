"""cbloss.adapters.tensorflow.class_balanced_loss: the core's values and analytic gradients on tf.Tensors,
eagerly, under tf.function and under XLA, with unknown dimensions, low precision, and named errors.

Reference values come from the NumPy core (cbloss.class_balanced_loss_and_grad, float64); the conformance suite
(tests/test_conformance.py) checks the same backend against the independent oracle."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import cbloss
from cbloss.adapters.tensorflow import class_balanced_loss
from tests.examples import check_examples_run_as_pasted

LOSSES = ("softmax", "sigmoid", "focal", "softmax_focal")
REDUCTIONS = ("none", "sum", "mean", "weighted_mean")


def _data(shape=(6, 5), seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=scale, size=shape)
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    soft = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
    weights = rng.uniform(0.2, 3.0, size=shape[-1])
    return logits, labels, soft, weights


def _tf_loss_and_grad(fn, logits, labels, weights, cotangent=None, **options):
    z = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(z)
        loss = fn(z, tf.constant(labels), None if weights is None else tf.constant(weights), **options)
        total = tf.reduce_sum(loss if cotangent is None else loss * tf.constant(cotangent, loss.dtype))
    return loss.numpy(), tape.gradient(total, z).numpy()


def _core(logits, labels, weights, cotangent=None, **options):
    loss, grad = cbloss.class_balanced_loss_and_grad(logits, labels, weights, **options)
    if np.ndim(loss):
        grad = grad * (np.ones_like(loss) if cotangent is None else cotangent)[..., None]
    return loss, grad


@pytest.mark.parametrize("loss", LOSSES)
def test_eager_float64_equals_numpy_core(loss):
    logits, labels, soft, weights = _data((4, 3, 5))
    cot = np.random.default_rng(3).normal(size=labels.shape)
    cases = [
        dict(labels=labels, weights=weights),
        dict(labels=labels, weights=None, label_smoothing=0.1),
        dict(labels=np.where(labels == 2, -100, labels), weights=weights, ignore_index=-100),
        dict(labels=soft, weights=weights),
        dict(labels=soft, weights=weights, label_smoothing=0.2),
    ]
    for case in cases:
        y, w = case.pop("labels"), case.pop("weights")
        for reduction in REDUCTIONS:
            gamma = {"focal": 1.5, "softmax_focal": 0.5}.get(loss)
            opts = dict(loss=loss, gamma=gamma, reduction=reduction, **case)
            c = cot if reduction == "none" else None
            ours = _tf_loss_and_grad(class_balanced_loss, logits, y, w, c, **opts)
            ref = _core(logits, y, w, c, **opts)
            np.testing.assert_allclose(ours[0], ref[0], rtol=1e-12, atol=1e-15, err_msg=str(opts))
            np.testing.assert_allclose(ours[1], ref[1], rtol=1e-12, atol=1e-15, err_msg=str(opts))


def test_class_axis_not_last():
    logits, labels, _, weights = _data((3, 4, 5))  # class axis 1 of (3, 5, 4) below
    moved = np.moveaxis(logits, -1, 1)
    ours = _tf_loss_and_grad(class_balanced_loss, moved, labels, weights, loss="focal", axis=1)
    ref = _core(logits, labels, weights, loss="focal")
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-12)
    np.testing.assert_allclose(ours[1], np.moveaxis(ref[1], -1, 1), rtol=1e-12)


@pytest.mark.parametrize("loss", LOSSES)
def test_eager_tf_function_and_xla_agree(loss):
    """float32, hard labels with ignore_index (per-position cotangent) and soft targets (mean)."""
    logits, labels, soft, weights = _data((8, 7), seed=4)
    logits = logits.astype(np.float32)
    hard = np.where(labels == 0, -1, labels)

    def step(z, y, cot, reduction, ignore_index):
        with tf.GradientTape() as tape:
            tape.watch(z)
            out = class_balanced_loss(z, y, weights, loss=loss, reduction=reduction, ignore_index=ignore_index)
            total = tf.reduce_sum(out * cot)
        return out, tape.gradient(total, z)

    graph = tf.function(step)
    xla = tf.function(step, jit_compile=True)
    cot = tf.constant(np.linspace(0.5, 2.0, 8, dtype=np.float32))
    for y, reduction, ignore, c in ((hard, "none", -1, cot), (soft.astype(np.float32), "mean", None, 1.0)):
        args = (tf.constant(logits), tf.constant(y), tf.constant(c, tf.float32), reduction, ignore)
        eager = step(*args)
        for fn in (graph, xla):
            result = fn(*args)
            for a, b in zip(result, eager, strict=True):
                np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=2e-6, atol=1e-7)


def test_unknown_dimensions_with_input_signature():
    """Batch and spatial dimensions unknown at trace time (class axis last, and class axis 1)."""
    logits, labels, _, weights = _data((2, 3, 4, 5), seed=5)
    ref = _core(logits, labels, weights, loss="softmax_focal", reduction="weighted_mean", ignore_index=1)

    def step(z, y, axis):
        with tf.GradientTape() as tape:
            tape.watch(z)
            out = class_balanced_loss(
                z, y, weights, loss="softmax_focal", reduction="weighted_mean", ignore_index=1, axis=axis
            )
        return out, tape.gradient(out, z)

    last = tf.function(
        lambda z, y: step(z, y, -1),
        input_signature=[tf.TensorSpec([None, None, None, 5], tf.float64), tf.TensorSpec([None, None, None], tf.int64)],
    )
    first = tf.function(
        lambda z, y: step(z, y, 1),
        input_signature=[tf.TensorSpec([None, 5, None, None], tf.float64), tf.TensorSpec([None, None, None], tf.int32)],
        jit_compile=True,
    )
    loss, grad = last(tf.constant(logits), tf.constant(labels))
    np.testing.assert_allclose(loss.numpy(), ref[0], rtol=1e-12)
    np.testing.assert_allclose(grad.numpy(), ref[1], rtol=1e-12, atol=1e-15)
    loss, grad = first(tf.constant(np.moveaxis(logits, -1, 1)), tf.constant(labels, tf.int32))
    np.testing.assert_allclose(loss.numpy(), ref[0], rtol=1e-12)
    np.testing.assert_allclose(np.moveaxis(grad.numpy(), 1, -1), ref[1], rtol=1e-12, atol=1e-15)
    # a different batch through the same traced function
    small = _data((1, 2, 2, 5), seed=6)
    ref = _core(small[0], small[1], weights, loss="softmax_focal", reduction="weighted_mean", ignore_index=1)
    np.testing.assert_allclose(last(tf.constant(small[0]), tf.constant(small[1]))[0].numpy(), ref[0], rtol=1e-12)


_UNKNOWN_SHAPES = [  # (labels, their TensorSpec, options) for (4, 3) logits traced as (None, 3)
    (np.array([2]), tf.TensorSpec([None], tf.int64), {}),
    (np.array([0, 1, 2, 0, 1]), tf.TensorSpec([None], tf.int64), {"loss": "focal"}),
    (np.full((1, 3), 1 / 3), tf.TensorSpec([None, 3], tf.float64), {"validate": True}),
    (np.ones((4, 1)), tf.TensorSpec([None, None], tf.float64), {"loss": "softmax_focal"}),
    (np.ones((4, 1)), tf.TensorSpec([None, None], tf.float64), {"loss": "sigmoid", "multi_label": "class"}),
    (np.ones((1, 3)), tf.TensorSpec([None, 3], tf.float64), {"loss": "focal", "multi_label": "sample"}),
    (np.ones((3, 4)), tf.TensorSpec([None, None], tf.float64), {"loss": "sigmoid", "multi_label": "class"}),
]


@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize(("labels", "spec", "options"), _UNKNOWN_SHAPES)
def test_labels_of_another_shape_are_an_error_when_traced_with_unknown_sizes(jit, labels, spec, options):
    """Labels whose sizes the trace cannot compare with the logits' fail when the graph runs (XLA drops the
    assertion, and fails the compilation instead), where broadcasting would give a number silently; the labels of
    the logits' shape run in the same traced function."""
    logits = np.random.default_rng(0).normal(size=(4, 3))
    loss = tf.function(
        lambda z, y: class_balanced_loss(z, y, **options),
        input_signature=[tf.TensorSpec([None, 3], tf.float64), spec],
        jit_compile=jit,
    )
    named = r"labels_must_have_the_logits_shape" if jit else r"labels: .* must have the logits"
    with pytest.raises(tf.errors.InvalidArgumentError, match=named):
        loss(tf.constant(logits), tf.constant(labels, spec.dtype))
    good = np.zeros((4, 3)) + np.eye(3)[[0, 1, 2, 0]] if labels.ndim == 2 else np.array([0, 1, 2, 0])
    want = cbloss.class_balanced_loss(logits, good, **{k: v for k, v in options.items() if k != "validate"})
    np.testing.assert_allclose(loss(tf.constant(logits), tf.constant(good, spec.dtype)).numpy(), want, rtol=1e-12)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("bad", [-1, 5, 2**40])
@pytest.mark.parametrize("traced", ["in_xla", "plain_then_xla"])
def test_out_of_range_labels_under_xla_give_nan_never_a_clamped_class(loss, weighted, bad, traced):
    """XLA's gather clamps an index outside [0, C) to the nearest class; unchecked (traced) labels there give that
    position a NaN loss and gradient instead of another class's, for every loss, weighted or not, also where XLA
    compiles a plain tf.function traced before (by an evaluation step, say: XLA is not in its cache key). Ignored
    labels and the other positions keep the eager values."""
    logits, labels, _, weights = _data((6, 5), seed=8)
    labels[1], labels[4] = bad, -100
    weights = weights if weighted else None
    options = dict(loss=loss, reduction="none", ignore_index=-100)
    plain = tf.function(lambda z, y, w: class_balanced_loss(z, y, w, **options))
    if traced == "plain_then_xla":
        in_range = np.where(labels == bad, 0, labels)
        plain(tf.constant(logits), tf.constant(in_range), None if weights is None else tf.constant(weights))
        assert plain.experimental_get_tracing_count() == 1
    xla = tf.function(lambda z, y, w: plain(z, y, w), jit_compile=True)
    value, grad = _tf_loss_and_grad(xla, logits, labels, weights)
    assert np.isnan(value[1]) and np.isnan(grad[1]).all()
    others = np.delete(np.arange(6), 1)
    want = _core(logits[others], labels[others], weights, **options)
    np.testing.assert_allclose(value[others], want[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grad[others], want[1], rtol=1e-12, atol=1e-15)
    if traced == "plain_then_xla":
        assert plain.experimental_get_tracing_count() == 1  # the plain trace ran under XLA
    mean = tf.function(lambda z, y: class_balanced_loss(z, y, weights, loss=loss), jit_compile=True)
    assert np.isnan(float(mean(tf.constant(logits), tf.constant(labels))))


def test_tf_function_with_numpy_weights_traces_without_autograph_warnings():
    """NumPy weights (what cbloss.class_balanced_weights returns) in a traced function: AutoGraph leaves the
    adapter's plain Python alone, so tracing logs no "could not transform" warning, and the value is eager's."""
    import logging

    logits, labels, _, weights = _data((6, 5), seed=7)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    tf.get_logger().addHandler(handler)
    try:
        traced = tf.function(
            lambda z, y: class_balanced_loss(z, y, weights, loss="focal"),
            input_signature=[tf.TensorSpec([None, 5], tf.float64), tf.TensorSpec([None], tf.int64)],
        )
        value = traced(tf.constant(logits), tf.constant(labels))
    finally:
        tf.get_logger().removeHandler(handler)
    assert not [r.getMessage() for r in records if "AutoGraph" in r.getMessage()]
    np.testing.assert_allclose(value.numpy(), _core(logits, labels, weights, loss="focal")[0], rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_computes_in_float32(dtype):
    logits, labels, _, weights = _data((16, 6), seed=7)
    z = tf.cast(tf.constant(logits), dtype)
    z32 = tf.cast(z, tf.float32)  # the same values, in float32
    results = []
    for x in (z, z32):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = class_balanced_loss(x, tf.constant(labels), weights, loss="focal")
        results.append((out, tape.gradient(out, x)))
    (loss, grad), (loss32, grad32) = results
    assert loss.dtype == tf.float32 and grad.dtype == tf.as_dtype(dtype)
    assert loss.numpy() == loss32.numpy()  # computed in float32 from the same values
    np.testing.assert_array_equal(grad.numpy(), tf.cast(grad32, dtype).numpy())


def test_weights_variable_and_constant_targets():
    logits, _, soft, weights = _data((5, 4), seed=8)
    z = tf.constant(logits)
    w = tf.Variable(weights)
    y = tf.constant(soft)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([z, y])
        out = class_balanced_loss(z, y, w, loss="sigmoid")
    assert tape.gradient(out, y) is None  # targets are constants of the loss
    assert tape.gradient(out, w) is None  # and so are the weights
    np.testing.assert_allclose(out.numpy(), cbloss.class_balanced_loss(logits, soft, weights, loss="sigmoid"))


def test_errors_are_named():
    logits, labels, soft, weights = _data((4, 3), seed=9)
    z, y = tf.constant(logits), tf.constant(labels)
    with pytest.raises(ValueError, match=r"^labels: class indices must be in \[0, 3\), got \[3\]"):
        class_balanced_loss(z, tf.constant([0, 1, 3, 2]))
    with pytest.raises(ValueError, match=r"^labels: soft targets must sum to 1"):
        class_balanced_loss(z, tf.constant(soft * 2))
    with pytest.raises(TypeError, match=r"^logits: must be floating point"):
        class_balanced_loss(tf.constant(labels), y)
    with pytest.raises(ValueError, match=r"^labels: class indices must have the logits' shape"):
        class_balanced_loss(z, tf.constant(labels[:2]))
    with pytest.raises(TypeError, match=r"^labels: must be integer"):
        class_balanced_loss(z, tf.constant(labels > 0))
    with pytest.raises(ValueError, match=r"^loss: must be one of"):
        class_balanced_loss(z, y, loss="hinge")
    with pytest.raises(ValueError, match=r"^reduction: must be one of"):
        class_balanced_loss(z, y, reduction="avg")
    with pytest.raises(ValueError, match=r"^gamma:"):
        class_balanced_loss(z, y, loss="focal", gamma=-1.0)
    with pytest.raises(ValueError, match=r"^weights: expected 3 class weights"):
        class_balanced_loss(z, y, weights[:2])
    with pytest.raises(ValueError, match=r"^weights: must be finite"):
        class_balanced_loss(z, y, [1.0, -1.0, 1.0])
    with pytest.raises(TypeError, match=r"^weights: must be real numbers"):
        class_balanced_loss(z, y, tf.ones(3, dtype=tf.complex64))
    for flag in ("validate", "cross_replica"):
        with pytest.raises(ValueError, match=rf"^{flag}: must be one of"):
            class_balanced_loss(z, y, **{flag: "no"})
    with pytest.raises(TypeError, match=r"^axis: must be an integer, got 1.0"):
        class_balanced_loss(z, y, axis=1.0)
    unknown_rank = tf.function(class_balanced_loss, input_signature=[tf.TensorSpec(None, z.dtype)] * 2)
    with pytest.raises(ValueError, match=r"logits: the rank must be known"):
        unknown_rank.get_concrete_function()
    labels_of_unknown_rank = tf.function(
        class_balanced_loss, input_signature=[tf.TensorSpec((None, 3), z.dtype), tf.TensorSpec(None, y.dtype)]
    )
    with pytest.raises(ValueError, match=r"labels: the rank must be known"):
        labels_of_unknown_rank.get_concrete_function()
    weights_of_unknown_rank = tf.function(
        lambda z, y, w: class_balanced_loss(z, y, w),
        input_signature=[tf.TensorSpec((None, 3), z.dtype), tf.TensorSpec((None,), y.dtype), tf.TensorSpec(None)],
    )
    with pytest.raises(ValueError, match=r"weights: the rank must be known"):
        weights_of_unknown_rank.get_concrete_function()
    with pytest.raises(ValueError, match=r"^axis:"):
        class_balanced_loss(z, y, axis=2)

    unknown_classes = tf.function(
        lambda z, y: class_balanced_loss(z, y), input_signature=[tf.TensorSpec([None, None]), tf.TensorSpec([None])]
    )
    with pytest.raises(ValueError, match="logits: the class dimension"):
        unknown_classes.get_concrete_function()


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_weights_of_unknown_length_are_compared_with_the_classes_when_the_graph_runs(jit_compile):
    """Weights given a (None,) signature: the class count of the logits fixes their length, checked when the graph
    runs (XLA: when it compiles); with C entries the loss is eager's."""
    signature = [tf.TensorSpec([None, 3]), tf.TensorSpec([None], tf.int64), tf.TensorSpec([None])]
    loss = tf.function(lambda z, y, w: class_balanced_loss(z, y, w, loss="focal"), input_signature=signature,
                       jit_compile=jit_compile)  # fmt: skip
    z = tf.constant(np.random.default_rng(0).normal(size=(4, 3)), tf.float32)
    y, w = tf.constant([0, 1, 2, 1], tf.int64), tf.constant([0.5, 1.0, 2.0])
    assert float(loss(z, y, w)) == pytest.approx(float(class_balanced_loss(z, y, w, loss="focal")), rel=1e-6)
    message = "weights_must_have_one_entry_per_class" if not jit_compile else r"\[4\] is not compatible with .*\[3\]"
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        loss(z, y, tf.ones(4))


def test_traced_validation():
    """Traced calls cannot raise on values; validate=True adds graph assertions, validate=None checks nothing."""
    z = tf.constant(np.zeros((2, 3), np.float32))
    bad = tf.constant([0, 5])
    checked = tf.function(lambda z, y: class_balanced_loss(z, y, validate=True, ignore_index=-1))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"labels: class indices must be in \[0, 3\)"):
        checked(z, bad)
    assert np.isfinite(checked(z, tf.constant([0, -1])).numpy())
    soft_checked = tf.function(lambda z, y: class_balanced_loss(z, y, validate=True))
    with pytest.raises(tf.errors.InvalidArgumentError, match="labels: soft targets must sum to 1"):
        soft_checked(z, tf.constant([[0.5, 0.5, 0.5], [1.0, 0.0, 0.0]], tf.float32))


@pytest.mark.parametrize("bad", [-0.5, np.nan, np.inf, 1e39])
def test_traced_validation_checks_weights_in_the_compute_dtype(bad):
    """validate=True asserts a traced weight variable finite and >= 0 as the loss uses it, in the compute dtype:
    a float64 weight of 1e39 with float32 logits is inf there (docs/conventions.md §9, §11.2)."""
    weights = tf.Variable(np.array([1.0, 2.0, 0.5]))  # float64
    checked = tf.function(lambda z, y: class_balanced_loss(z, y, weights, validate=True, loss="focal"))
    z, y = tf.constant(np.zeros((2, 3), np.float32)), tf.constant([0, 1])
    expected = float(class_balanced_loss(z, y, weights.numpy(), loss="focal"))
    assert float(checked(z, y)) == pytest.approx(expected)
    weights.assign([1.0, bad, 0.5])
    with pytest.raises(tf.errors.InvalidArgumentError, match="weights: must be finite and >= 0 in the compute dtype"):
        checked(z, y)
    weights.assign([1.0, 3e38, 0.5])  # within float32's range
    assert float(checked(z, y)) == pytest.approx(float(class_balanced_loss(z, y, weights.numpy(), loss="focal")))


@pytest.mark.parametrize(
    "argument, logits, labels, message",
    [
        ("labels", [[0.0] * 4] * 3, [True, 1, 2], "a list that mixes bools with numbers"),
        ("logits", [[True, 0.5, 0.0, 0.0]] * 3, [0, 1, 2], "a list that mixes bools with numbers"),
        ("labels", [[0.0] * 4] * 3, None, "must be an array or a .nested. list of numbers, got NoneType"),
        ("logits", None, [0, 1, 2], "must be an array or a .nested. list of numbers, got NoneType"),
        ("labels", [[0.0] * 4] * 3, "ragged", "must be a dense tensor or array of numbers, got RaggedTensor"),
    ],
)
def test_inputs_that_are_no_dense_tensors_are_named(argument, logits, labels, message):
    """TensorFlow's conversion errors do not say which argument; the core's rules do (docs/conventions.md §6.1)."""
    labels = tf.ragged.constant([[0], [1, 2], [2]]) if labels == "ragged" else labels
    with pytest.raises(TypeError, match=rf"^{argument}: {message}"):
        class_balanced_loss(logits, labels)
    for weights in (tf.sparse.from_dense(tf.ones(4)), tf.ragged.constant([[1.0], [1.0, 1.0], [1.0]])):
        with pytest.raises(
            TypeError, match=rf"^weights: must be a dense tensor or array of numbers, got {type(weights).__name__}"
        ):
            class_balanced_loss([[0.0] * 4] * 3, [0, 1, 2], weights)
    assert class_balanced_loss([[0.0] * 4] * 3, [0, 1, 2]).dtype == tf.float32  # lists convert as TensorFlow does


def test_gamma_beyond_the_compute_dtype_is_named():
    with pytest.raises(ValueError, match=r"^gamma: must be at most 3.402823e\+38"):
        class_balanced_loss(tf.zeros((2, 3)), tf.constant([0, 2]), loss="softmax_focal", gamma=1e39)


@pytest.mark.parametrize("traced", [False, True])
def test_uint64_labels_beyond_int64_are_out_of_range(traced):
    """2**64 - 1 in uint64 is -1 in int64: read as int64's largest value instead, an out-of-range label, never one
    equal to ignore_index=-1 (docs/conventions.md §6.1), eagerly and in the graph's assertions."""
    labels = tf.constant(np.array([0, 2**64 - 1, 2], np.uint64))
    call = lambda z, y: class_balanced_loss(z, y, ignore_index=-1, validate=True)  # noqa: E731
    error = tf.errors.InvalidArgumentError if traced else ValueError
    with pytest.raises(error, match=r"labels: class indices must be in \[0, 4\), got\]? \[?9223372036854775807"):
        (tf.function(call) if traced else call)(tf.zeros((3, 4)), labels)


@pytest.mark.parametrize("where", [0, 1, 2])
@pytest.mark.parametrize("multi_label", [None, "class"])
def test_traced_validation_finds_nan_targets(where, multi_label):
    """A NaN target fails every comparison, so a rule written ``not (t >= 0)`` catches it only until the graph
    optimiser rewrites that to ``t < 0``: the graph assertions name NaN soft and multi-hot targets anywhere."""
    options = dict(loss="sigmoid", multi_label=multi_label) if multi_label else {}
    checked = tf.function(lambda z, y: class_balanced_loss(z, y, validate=True, **options))
    targets = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], np.float32)
    targets[1, where] = np.nan
    message = r"multi-hot targets must be in \[0, 1\]" if multi_label else "soft targets must be finite probabilities"
    with pytest.raises(tf.errors.InvalidArgumentError, match="labels: " + message):
        checked(tf.zeros((2, 3)), tf.constant(targets))


def _values(a):
    """A NumPy copy of an array's, a tensor's or a variable's current values."""
    return a.numpy().copy() if hasattr(a, "numpy") else np.array(a, copy=True)


@pytest.mark.parametrize("loss", LOSSES)
def test_inputs_are_left_unchanged(loss):
    """NumPy arrays, tensors and variables given as logits, labels and weights hold the same values afterwards
    (docs/conventions.md §14), with and without a gradient, for hard labels and soft targets."""
    logits, labels, soft, weights = _data((6, 5), seed=10)
    given = [
        (logits.copy(), labels.copy(), weights.copy()),
        (tf.constant(logits), tf.constant(labels), tf.constant(weights)),
        (tf.Variable(logits), tf.Variable(labels), tf.Variable(weights)),
        (tf.Variable(logits), tf.constant(soft), tf.Variable(weights)),
        (logits.copy(), soft.copy(), weights.copy()),
    ]
    for z, y, w in given:
        before = [_values(a) for a in (z, y, w)]
        with tf.GradientTape() as tape:
            x = tf.convert_to_tensor(z)
            tape.watch(x)
            out = class_balanced_loss(x, y, w, loss=loss, label_smoothing=0.1)
        tape.gradient(out, x)
        class_balanced_loss(z, y, w, loss=loss, reduction="none")
        for a, b in zip((z, y, w), before, strict=True):
            np.testing.assert_array_equal(_values(a), b)
        soft_given = _values(y).dtype.kind == "f"
        reference = cbloss.class_balanced_loss(
            logits, soft if soft_given else labels, weights, loss=loss, label_smoothing=0.1
        )
        np.testing.assert_allclose(out.numpy(), reference, rtol=1e-12)


def test_unweighted_hard_labels_with_unknown_dimensions():
    logits, labels, _, _ = _data((2, 3, 5), seed=11)
    ref = _core(logits, labels, None, loss="sigmoid", reduction="mean")

    @tf.function(input_signature=[tf.TensorSpec([None, None, 5], tf.float64), tf.TensorSpec([None, None], tf.int64)])
    def step(z, y):
        with tf.GradientTape() as tape:
            tape.watch(z)
            out = class_balanced_loss(z, y, loss="sigmoid")
        return out, tape.gradient(out, z)

    loss, grad = step(tf.constant(logits), tf.constant(labels))
    np.testing.assert_allclose(loss.numpy(), ref[0], rtol=1e-12)
    np.testing.assert_allclose(grad.numpy(), ref[1], rtol=1e-12, atol=1e-15)


def test_eager_forward_only_computes_no_gradient(monkeypatch):
    """Eagerly the gradient is computed only under a tape that watches the logits (docs/conventions.md §10)."""
    import cbloss.adapters.tensorflow as tfa

    with_grad = []
    original = tfa.evaluate

    def spy(*args, **kwargs):
        with_grad.append(kwargs["with_grad"])
        return original(*args, **kwargs)

    monkeypatch.setattr(tfa, "evaluate", spy)
    logits, labels, _, weights = _data((4, 3), seed=12)
    z = tf.constant(logits)
    class_balanced_loss(z, labels, weights, loss="focal")
    with tf.GradientTape() as tape:
        class_balanced_loss(z, labels, weights, loss="focal")  # z not watched
        tape.watch(z)
        out = class_balanced_loss(z, labels, weights, loss="focal")
    assert with_grad == [False, False, True]
    np.testing.assert_allclose(tape.gradient(out, z).numpy(), _core(logits, labels, weights, loss="focal")[1])


def test_forward_mode_jvp():
    """A forward accumulator records no tape at the call: the gradient is computed when the JVP asks for it."""
    logits, labels, soft, weights = _data((4, 3), seed=13)
    direction = np.random.default_rng(14).normal(size=logits.shape)
    for y in (labels, soft):
        z = tf.constant(logits)
        with tf.autodiff.ForwardAccumulator(z, tf.constant(direction)) as acc:
            out = class_balanced_loss(z, y, weights, loss="softmax_focal")
        grad = _core(logits, y, weights, loss="softmax_focal")[1]
        np.testing.assert_allclose(acc.jvp(out).numpy(), np.sum(grad * direction), rtol=1e-12)


def test_soft_targets_are_checked_in_their_own_dtype():
    """float64 targets that sum to 1 in float64 are accepted with float32 logits, though their float32 roundings
    do not sum to 1 within float64's tolerance; targets that do not sum to 1 are still rejected."""
    rng = np.random.default_rng(15)
    targets = rng.dirichlet(np.ones(100), size=64)
    z = tf.zeros((64, 100), tf.float32)
    np.testing.assert_allclose(class_balanced_loss(z, targets).numpy(), np.log(100.0), rtol=1e-6)
    with pytest.raises(ValueError, match=r"^labels: soft targets must sum to 1"):
        class_balanced_loss(z, targets * (1 + 1e-6))


@pytest.mark.parametrize("mode", ["eager", "tf.function", "xla"])
@pytest.mark.parametrize("multi_label", [None, "class"])
def test_float8_targets_are_checked_and_read_through_float32(mode, multi_label):
    """Soft and multi-hot targets in float8, which TensorFlow has no comparison or sum for: checked (eagerly, or
    asserted in the graph) and used as the float32 numbers they hold, under XLA too; bad ones named."""
    float8 = tf.dtypes.experimental.float8_e4m3fn
    options = dict(loss="sigmoid", multi_label=multi_label) if multi_label else {}
    call = lambda z, y: class_balanced_loss(z, y, [1.0, 0.5, 2.0], validate=True, **options)  # noqa: E731
    call = {"eager": call, "tf.function": tf.function(call), "xla": tf.function(call, jit_compile=True)}[mode]
    z = tf.constant([[1.5, -2.0, 0.5], [0.25, 3.0, -1.0]])
    targets = np.array([[0.25, 0.25, 0.5], [0.0, 0.5, 0.5]])
    want = class_balanced_loss(z, tf.constant(targets, tf.float32), [1.0, 0.5, 2.0], **options)
    assert float(call(z, tf.constant(targets, float8))) == float(want)
    if not multi_label:  # summing to 1 + 1/256, exact in float8: within the 1e-2 of the floats below float32
        near = np.array([[0.5, 0.25, 0.125, 0.125, 1 / 256]])
        checked = class_balanced_loss(tf.zeros((1, 5)), tf.constant(near, float8), validate=True)
        assert float(checked) == float(class_balanced_loss(tf.zeros((1, 5)), tf.constant(near), validate=False))
    if mode == "xla":
        return  # XLA drops graph assertions (docs/tensorflow.md)
    error = ValueError if mode == "eager" else tf.errors.InvalidArgumentError
    message = r"multi-hot targets must be in \[0, 1\]" if multi_label else "soft targets must be finite probabilities"
    with pytest.raises(error, match="labels: " + message):
        call(z, tf.constant(-targets, float8))


def test_docstring_examples_run_as_pasted():
    import cbloss.adapters.tensorflow as tfa
    from cbloss.adapters import _tf_distributed

    check_examples_run_as_pasted(tfa, ("class_balanced_loss",))
    check_examples_run_as_pasted(_tf_distributed, ("all_reduce_counts",))  # exported by cbloss.adapters.tensorflow


@pytest.mark.parametrize("multi_label", ["class", "sample"])
def test_multi_hot_targets_equal_numpy_core(multi_label):
    """bool, integer and float multi-hot targets (docs/conventions.md §6.5), eagerly and under XLA."""
    logits, _, _, weights = _data((6, 5), seed=16)
    targets = np.random.default_rng(17).uniform(size=logits.shape) < 0.4
    reduction = "weighted_mean" if multi_label == "sample" else "mean"
    options = dict(loss="focal", gamma=1.5, multi_label=multi_label, reduction=reduction, label_smoothing=0.1)
    ref = _core(logits, targets.astype(np.float64), weights, **options)
    for y in (targets, targets.astype(np.int32), targets.astype(np.float32)):
        ours = _tf_loss_and_grad(class_balanced_loss, logits, y, weights, **options)
        np.testing.assert_allclose(ours[0], ref[0], rtol=1e-12)
        np.testing.assert_allclose(ours[1], ref[1], rtol=1e-12, atol=1e-15)

    @tf.function(jit_compile=True)
    def step(z, y):
        with tf.GradientTape() as tape:
            tape.watch(z)
            out = class_balanced_loss(z, y, weights, **options)
        return out, tape.gradient(out, z)

    loss, grad = step(tf.constant(logits), tf.constant(targets))
    np.testing.assert_allclose(loss.numpy(), ref[0], rtol=1e-12)
    np.testing.assert_allclose(grad.numpy(), ref[1], rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match=r"^labels: multi-hot targets must be in \[0, 1\]"):
        class_balanced_loss(tf.constant(logits), targets * 2.0, loss="sigmoid", multi_label=multi_label)
    checked = tf.function(
        lambda z, y: class_balanced_loss(z, y, validate=True, loss="sigmoid", multi_label=multi_label)
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"labels: multi-hot targets must be in \[0, 1\]"):
        checked(tf.constant(logits), tf.constant(targets * 2.0))


def test_narrow_label_dtypes_and_a_huge_ignore_index():
    """Any integer dtype gives the int64 result, even one too narrow to count the classes (docs/conventions.md
    §6.1); an ignore_index beyond int32 is compared without overflow."""
    logits, _, _, weights = _data((8, 300), seed=18, scale=1.0)
    labels = np.array([0, 255, 17, 200, 128, 3, 254, 99])
    ref = _core(logits, labels, weights, loss="softmax_focal")
    for dtype in (np.uint8, np.int16, np.int32):
        ours = _tf_loss_and_grad(class_balanced_loss, logits, labels.astype(dtype), weights, loss="softmax_focal")
        np.testing.assert_allclose(ours[0], ref[0], rtol=1e-12)
        np.testing.assert_allclose(ours[1], ref[1], rtol=1e-12, atol=1e-15)
    big = 2**40
    ref = _core(logits, np.where(labels == 17, big, labels), weights, ignore_index=big)
    ours = _tf_loss_and_grad(
        class_balanced_loss, logits, np.where(labels == 17, big, labels), weights, ignore_index=big
    )
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-12)
    np.testing.assert_allclose(ours[1], ref[1], rtol=1e-12, atol=1e-15)
    with pytest.raises(TypeError, match=r"^labels: class indices must be integers"):
        class_balanced_loss(tf.constant(logits), labels.astype(np.float32))


def test_integer_and_bool_multi_hot_targets():
    """Multi-hot targets as integers or bools: the oracle's loss and gradient of the same 0/1 floats."""
    from tests.framework_checks import check_integer_and_bool_multi_hot

    def loss_and_grad(logits, targets, weights, dtype, **options):
        z = tf.constant(logits)
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = class_balanced_loss(z, tf.cast(targets, dtype), weights, **options)
        return float(value), tape.gradient(value, z).numpy()

    check_integer_and_bool_multi_hot(loss_and_grad, [tf.int32, tf.uint8, tf.bool])


@pytest.mark.parametrize("loss", ["softmax", "sigmoid", "focal", "softmax_focal"])
@pytest.mark.parametrize("watch_logits", [False, True], ids=["constant logits", "watched logits"])
def test_labels_and_weights_are_constants_under_a_tape(loss, watch_logits):
    """Class weights and soft targets are constants (docs/conventions.md §10): a tape that watches them (variables
    are watched by themselves) gets no gradient for them, whether or not it watches the logits, and the logits'
    gradient is the core's."""
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(4, 3)).astype(np.float32)
    targets = rng.dirichlet(np.ones(3), size=4).astype(np.float32)
    weights = tf.Variable(np.array([0.5, 1.0, 2.0], np.float32))
    soft = tf.Variable(targets)
    z = tf.constant(logits)
    for labels in (tf.constant([0, 2, 1, 2]), soft):
        with tf.GradientTape(persistent=True) as tape:
            if watch_logits:
                tape.watch(z)
            value = class_balanced_loss(z, labels, weights, loss=loss)
        assert tape.gradient(value, weights) is None
        assert tape.gradient(value, soft) is None
        if watch_logits:
            _, expected = cbloss.class_balanced_loss_and_grad(logits, np.asarray(labels), weights.numpy(), loss=loss)
            np.testing.assert_allclose(tape.gradient(value, z).numpy(), expected, rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("option, value", [("gamma", 0.5), ("label_smoothing", 0.1), ("ignore_index", 1)])
def test_tensor_options_inside_a_tf_function(option, value):
    """A real option given as a concrete 0-d tensor is read as its number inside a tf.function as it is eagerly (the
    options are Python values, never converted by AutoGraph); an option with no value to read there (a traced
    tensor, a variable read in the graph; any tensor for the integer ignore_index) is a TypeError naming it, never
    a range error it does not break."""
    logits, labels, _, weights = _data((6, 5), seed=9)
    z, y = tf.constant(logits), tf.constant(labels)
    dtype = tf.int64 if option == "ignore_index" else tf.float64
    options = dict(loss="focal", reduction="sum")
    eager = class_balanced_loss(z, y, weights, **options, **{option: value})
    expected = cbloss.class_balanced_loss(logits, labels, weights, **options, **{option: value})
    np.testing.assert_allclose(eager.numpy(), expected, rtol=1e-12)
    captured = tf.constant(value, dtype)
    traced = tf.function(lambda z: class_balanced_loss(z, y, weights, **options, **{option: captured}))
    if option != "ignore_index":
        np.testing.assert_allclose(traced(z).numpy(), eager.numpy(), rtol=1e-14)
    variable = tf.Variable(value, dtype=dtype)
    as_argument = tf.function(lambda z, o: class_balanced_loss(z, y, weights, **options, **{option: o}))
    in_graph = tf.function(lambda z: class_balanced_loss(z, y, weights, **options, **{option: variable}))
    calls = [lambda: as_argument(z, captured), lambda: in_graph(z)] + ([traced] if option == "ignore_index" else [])
    for call in calls:
        with pytest.raises(TypeError, match=rf"{option}: must be a"):  # within "in user code: ..."
            call() if call is not traced else call(z)
