"""The Keras loss on the running Keras backend (tensorflow, jax or torch): values and gradients against the
float64 oracle for every loss and target kind, probabilities with ``from_logits=False``, class weights changed
by ReweightingCallback inside ``fit`` with one compiled step, and save/load in a new process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from cbloss import class_balanced_weights
from cbloss.adapters.keras import ClassBalancedLoss, ReweightingCallback
from cbloss.schedules import BetaWarmup, DeferredReweighting
from tests import oracle
from tests.examples import check_examples_run_as_pasted
from tests.keras.conftest import BACKEND

COUNTS = [300, 60, 12, 3]
BETA = 0.999
C = len(COUNTS)
# The weights variable is float64, but float32 on JAX without x64 (jax_enable_x64).
WEIGHTS_RTOL = 1e-7 if BACKEND == "jax" else 0.0


def _grad(loss, y_true, y_pred):
    """d loss(y_true, y_pred) / d y_pred through the backend's own autodiff (the adapter's custom gradient)."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        p = tf.constant(y_pred)
        with tf.GradientTape() as tape:
            tape.watch(p)
            value = loss(y_true, p)
        return np.asarray(tape.gradient(value, p))
    if BACKEND == "jax":
        import jax

        return np.asarray(jax.grad(lambda p: loss(y_true, p))(keras.ops.convert_to_tensor(y_pred)))
    import torch

    p = torch.tensor(y_pred, requires_grad=True)
    loss(y_true, p).backward()
    return p.grad.numpy()


def _case(kind, n=10, seed=0):
    """Logits and (Keras-style) targets of one kind, and the targets the oracle reads."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=3.0, size=(n, C)).astype(np.float32)
    if kind == "indices":  # Keras hands class indices over as floats
        y = rng.integers(0, C, size=n)
        return z, y.astype(np.float32), y
    if kind == "column":  # (N, 1), like SparseCategoricalCrossentropy
        y = rng.integers(0, C, size=n)
        return z, y[:, None].astype(np.float32), y
    if kind == "soft":
        t = rng.dirichlet(np.ones(C), size=n)
        return z, t.astype(np.float32), t.astype(np.float32).astype(np.float64)
    if kind == "multi_fractional":  # quarters: exact in float32
        t = (rng.integers(0, 5, size=(n, C)) / 4.0).astype(np.float32)
        return z, t, t.astype(np.float64)
    t = (rng.random((n, C)) < 0.4).astype(np.float32)  # multi-hot
    return z, t, t.astype(np.float64)


CASES = [
    (dict(loss="softmax"), "indices"),
    (dict(loss="softmax_focal", gamma=1.5), "column"),
    (dict(loss="sigmoid"), "indices"),
    (dict(loss="focal", gamma=2.0, label_smoothing=0.1), "column"),
    (dict(loss="softmax", label_smoothing=0.2), "soft"),
    (dict(loss="focal", gamma=0.5), "soft"),
    (dict(loss="sigmoid", multi_label="class"), "multi_hot"),
    (dict(loss="focal", gamma=2.0, multi_label="sample"), "multi_hot"),
    (dict(loss="focal", gamma=0.5, multi_label="class", label_smoothing=0.1), "multi_hot"),
    (dict(loss="sigmoid", multi_label="sample", label_smoothing=0.1), "multi_hot"),
    (dict(loss="focal", gamma=0.0, multi_label="sample"), "multi_fractional"),
    (dict(loss="focal", gamma=2.0, multi_label="class", label_smoothing=0.1), "multi_fractional"),
]


@pytest.mark.parametrize(("options", "kind"), CASES)
def test_values_and_gradients_equal_the_oracle(options, kind):
    z, y_keras, y_oracle = _case(kind)
    loss = ClassBalancedLoss(COUNTS, BETA, **options)
    w = class_balanced_weights(COUNTS, BETA)
    ref = oracle.loss_and_grad(z, y_oracle, w, reduction="mean" if options.get("multi_label") else "none", **options)
    n = len(z)
    expected = float(np.mean(ref.value)) if np.ndim(ref.value) else float(ref.value)
    expected_grad = ref.grad if options.get("multi_label") else ref.grad / n  # Keras: sum over batch size
    np.testing.assert_allclose(float(loss(y_keras, z)), expected, rtol=2e-6)
    np.testing.assert_allclose(_grad(loss, y_keras, z), expected_grad, rtol=2e-5, atol=1e-7)


def _checkpointed_grad(loss, y_true):
    """:func:`_grad` of ``y_pred`` with the loss under the backend's gradient checkpointing (rematerialisation),
    one compiled step where the backend compiles (a traced JAX step reads the weights variable through a host
    callback)."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        def tensorflow_grad(y_pred):
            p = tf.constant(y_pred)
            with tf.GradientTape() as tape:
                tape.watch(p)
                value = tf.recompute_grad(lambda q: loss(y_true, q))(p)
            return np.asarray(tape.gradient(value, p))

        return tensorflow_grad
    if BACKEND == "jax":
        import jax

        step = jax.jit(jax.grad(jax.checkpoint(lambda p: loss(y_true, p))))
        return lambda y_pred: np.asarray(step(keras.ops.convert_to_tensor(y_pred)))
    import torch
    import torch.utils.checkpoint

    def torch_grad(y_pred):
        p = torch.tensor(y_pred, requires_grad=True)
        torch.utils.checkpoint.checkpoint(lambda q: loss(y_true, q), p, use_reentrant=False).backward()
        return p.grad.numpy()

    return torch_grad


@pytest.mark.parametrize(("options", "kind"), CASES[:4])
def test_gradient_checkpointing_gives_the_same_gradient(options, kind):
    """Under gradient checkpointing (jax.checkpoint, tf.recompute_grad, torch.utils.checkpoint), the weighted
    loss's gradient is the plain one, and weights set afterwards reach the same compiled step."""
    z, y_keras, _ = _case(kind)
    loss = ClassBalancedLoss(COUNTS, BETA, **options)
    checkpointed = _checkpointed_grad(loss, y_keras)
    np.testing.assert_allclose(checkpointed(z), _grad(loss, y_keras, z), rtol=1e-6, atol=1e-8)
    loss.set_weights(np.linspace(0.5, 2.0, C))
    np.testing.assert_allclose(checkpointed(z), _grad(loss, y_keras, z), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    "options", [dict(loss="softmax"), dict(loss="softmax_focal"), dict(loss="sigmoid"), dict(loss="focal")]
)
def test_probabilities_with_from_logits_false(options):
    """from_logits=False reads the final softmax's (or sigmoid's) probabilities and equals the loss on logits; its
    gradient is the logits' gradient through z = log p (softmax: softmax(log p) = p), or z = log(p / (1 - p))."""
    z, y, labels = _case("indices", seed=3)
    z = np.clip(z, -4.0, 4.0)  # far from the clip at keras.config.epsilon()
    if options["loss"].startswith("softmax"):
        p = np.exp(z - z.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
    else:
        p = 1.0 / (1.0 + np.exp(-z))
    from_logits = ClassBalancedLoss(COUNTS, BETA, **options)
    from_probabilities = ClassBalancedLoss(COUNTS, BETA, from_logits=False, **options)
    np.testing.assert_allclose(float(from_probabilities(y, p)), float(from_logits(y, z)), rtol=1e-5)
    ref = oracle.loss_and_grad(z, labels, class_balanced_weights(COUNTS, BETA), reduction="none", **options)
    dz_dp = 1.0 / p if options["loss"].startswith("softmax") else 1.0 / (p * (1.0 - p))
    expected = ref.grad / len(z) * dz_dp  # Keras: the mean over the batch
    np.testing.assert_allclose(_grad(from_probabilities, y, p.astype(np.float32)), expected, rtol=1e-4, atol=1e-6)
    saturated = np.where(np.arange(C) == 0, 1.0, 0.0)[None].repeat(2, 0).astype(np.float32)  # p = 0 and 1
    assert np.isfinite(float(from_probabilities(np.array([0.0, 1.0], np.float32), saturated)))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize(
    "options", [dict(loss="softmax"), dict(loss="focal"), dict(loss="sigmoid", multi_label="class")]
)
def test_saturated_probabilities_in_a_low_precision_loss_dtype(dtype, options):
    """A float16 or bfloat16 loss (``dtype=``) reads probabilities in float32, where it computes: there
    ``1 - eps`` is below 1, so a saturated probability (0 or 1, as a float16 sigmoid gives at |z| > 11) is clipped
    to a finite loss, the float32 loss's rounded, as Keras' own float32 losses are."""
    softmax = options["loss"] == "softmax"
    p = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]] if softmax else [[1.0, 0.0, 0.5, 1.0]] * 2, dtype)
    y = np.array([[1, 0, 1, 0], [0, 1, 0, 1]], np.float32) if "multi_label" in options else np.array([0, 2])
    low = ClassBalancedLoss(COUNTS, BETA, from_logits=False, dtype=dtype, **options)
    full = ClassBalancedLoss(COUNTS, BETA, from_logits=False, **options)
    value = float(keras.ops.convert_to_numpy(keras.ops.cast(low(y, p), "float32")))
    want = float(full(y, p.astype(np.float32)))
    assert np.isfinite(value) and value == pytest.approx(want, rel=2**-7)


def test_non_integral_labels_and_set_weights_are_checked():
    z, y, _ = _case("indices")
    loss = ClassBalancedLoss(COUNTS, BETA)
    with pytest.raises(ValueError, match=r"^labels: class indices must be integers"):
        loss(y + 0.5, z)
    # beyond int64, where a cast has no defined value (it may give int64's smallest, equal to this ignore_index)
    with pytest.raises(ValueError, match=r"^labels: class indices must be in \[0, 4\), got \[1\.0\d*e\+30\]"):
        ClassBalancedLoss(COUNTS, BETA, ignore_index=-(2**63))(np.array([0.0, 1e30], np.float32), z[:2])
    with pytest.raises(ValueError, match=r"^weights: "):
        loss.set_weights([1.0, 2.0])
    with pytest.raises(ValueError, match=r"^weights: "):
        loss.set_weights([1.0, 2.0, np.nan, 1.0])
    with pytest.raises(ValueError, match=r"^weights: this loss is unweighted"):
        ClassBalancedLoss().set_weights([1.0] * C)
    # a float32 loss cannot hold a weight beyond float32's range (it would be inf in the step): named at once
    beyond = [1.0, 1e39] + [1.0] * (C - 2)
    with pytest.raises(ValueError, match=r"^weights: must be at most 3.402823e\+38 \(float32's largest"):
        ClassBalancedLoss(weights=beyond)
    with pytest.raises(ValueError, match=r"^weights: must be at most 3.402823e\+38 \(float32's largest"):
        loss.set_weights(beyond)
    # a float64 loss holds them, where the backend keeps its weights in float64 (JAX only with x64)
    if BACKEND != "jax" or _jax_x64():
        assert ClassBalancedLoss(weights=beyond, dtype="float64").class_weights[1] == 1e39
    else:
        with pytest.raises(ValueError, match=r"^weights: must be at most 3.402823e\+38 \(float32's largest"):
            ClassBalancedLoss(weights=beyond, dtype="float64")
    with pytest.raises(TypeError, match=r"^schedule: "):
        ReweightingCallback([1.0] * C)
    with pytest.raises(ValueError, match=r"^from_logits: "):
        ClassBalancedLoss(COUNTS, BETA, from_logits="yes")
    loss.set_weights(np.arange(1, C + 1))
    np.testing.assert_array_equal(loss.class_weights, np.arange(1, C + 1, dtype=np.float64))
    ref = oracle.loss_and_grad(z, y.astype(int), np.arange(1, C + 1), reduction="none")
    np.testing.assert_allclose(float(loss(y, z)), np.mean(ref.value), rtol=2e-6)


@pytest.mark.parametrize("loss", ["softmax", "focal"])
def test_errors_name_labels_on_every_backend(loss):
    """The label rules' errors name ``labels`` (and ``multi_label``'s targets) on every backend, PyTorch's
    included, whose own adapter names its arguments ``input`` and ``target``."""
    z, y, _ = _case("indices")
    y[3] = C  # out of range
    with pytest.raises(ValueError, match=rf"^labels: class indices must be in \[0, {C}\)"):
        ClassBalancedLoss(COUNTS, BETA, loss=loss)(y, z)
    _, t, _ = _case("multi_hot")
    t[2, 1] = 2.0
    with pytest.raises(ValueError, match=r"^labels: multi-hot targets must be in \[0, 1\]"):
        ClassBalancedLoss(COUNTS, BETA, loss="sigmoid" if loss == "softmax" else loss, multi_label="class")(t, z)
    with pytest.raises(ValueError, match=r"^labels: multi-hot targets must have the logits' shape"):
        ClassBalancedLoss(COUNTS, BETA, loss="focal", multi_label="class")(t[:, :2], z)
    # (N, 1) is squeezed for class indices only: multi-hot targets are named with the shape given
    with pytest.raises(ValueError, match=rf"^labels: multi-hot targets .*, got \({len(t)}, 1\)$"):
        ClassBalancedLoss(COUNTS, BETA, loss="sigmoid", multi_label="class")(t[:, :1], z)


def test_an_ignore_index_beyond_int32_is_not_wrapped():
    """Keras hands over class indices as floats; they become integers again in the backend's widest integer dtype,
    so that an ignore_index beyond int32 (valid: docs/conventions.md §6.4) ignores its labels and wraps none. JAX
    without x64 has no integer wider than int32, where such a label is out of range."""
    z, y, _ = _case("indices")
    labels = y.astype(np.int64)
    labels[[1, 4]] = 2**31
    loss = ClassBalancedLoss(COUNTS, BETA, ignore_index=2**31, reduction="sum", dtype="float64")
    if BACKEND == "jax" and not _jax_x64():
        with pytest.raises(ValueError, match=r"^labels: class indices must be in \[0, 4\)"):
            loss(labels, z)
        return
    kept = np.ones(len(y), dtype=bool)
    kept[[1, 4]] = False
    weights = class_balanced_weights(COUNTS, BETA)
    ref = oracle.loss_and_grad(z[kept], y[kept].astype(int), weights, reduction="none")
    np.testing.assert_allclose(float(loss(labels, z)), np.sum(ref.value), rtol=1e-6)


def test_a_class_index_beyond_the_backends_integers_is_never_the_ignored_value():
    """A float class index beyond the backend's integers (int32 for JAX without x64) has no defined cast there: it
    could saturate to an ignore_index at that end. Unchecked, it is out of range as on every backend
    (docs/keras.md): NaN for JAX, and PyTorch's and TensorFlow's own gathers refuse it."""
    z = np.zeros((2, 3), np.float32)
    loss = ClassBalancedLoss(weights=[1.0, 1.0, 1.0], ignore_index=-(2**31), validate=False, reduction="none")
    labels = np.array([0.0, -3e9], np.float32)
    if BACKEND != "jax":
        with pytest.raises(Exception, match="-3000000000"):
            loss(labels, z)
        return
    values = np.asarray(loss(labels, z))
    np.testing.assert_allclose(values[0], np.log(3.0), rtol=1e-6)
    assert np.isnan(values[1])


@pytest.mark.parametrize("multi_label", [None, "class"])
@pytest.mark.parametrize("loss", ["sigmoid", "focal"])
def test_one_class_targets_of_shape_n_1_are_targets_not_class_indices(loss, multi_label):
    """With one class, (N, 1) targets have the logits' shape: they are targets (soft, which with one class are all
    1, or multi-hot), not class indices to squeeze (index 1 would be out of range)."""
    z = np.array([[2.0], [-1.0], [0.5]], np.float32)
    t = np.array([[1.0], [1.0], [1.0 if multi_label is None else 0.0]], np.float32)
    options = dict(loss=loss, multi_label=multi_label, reduction="none")
    loss_fn = ClassBalancedLoss(weights=[1.0], **options, dtype="float64")
    expected = oracle.loss_and_grad(z, t, np.ones(1), **options).value
    np.testing.assert_allclose(np.asarray(loss_fn(t, z)), expected, rtol=1e-6)


@pytest.mark.parametrize("target", ["index", "soft"])
@pytest.mark.parametrize("loss", ["softmax", "focal"])
def test_unbatched_logits(loss, target):
    """An unbatched (C,) input takes a 0-d class index or a (C,) soft target (docs/conventions.md §6.1) on every
    backend: PyTorch's class dim is then 0, not 1."""
    z = np.array([0.3, -1.2, 2.0, 0.5])
    label = np.array(2) if target == "index" else np.array([0.1, 0.2, 0.3, 0.4])
    weights = class_balanced_weights(COUNTS, BETA)
    loss_fn = ClassBalancedLoss(COUNTS, BETA, loss=loss, reduction="none", dtype="float64")
    expected = oracle.loss_and_grad(z[None], label[None], weights, loss=loss, reduction="none").value[0]
    np.testing.assert_allclose(np.asarray(loss_fn(label, z)), expected, rtol=1e-6)


def _jax_x64() -> bool:
    import jax

    return bool(jax.config.read("jax_enable_x64"))


class _CountingLoss(ClassBalancedLoss):
    """Counts the calls of ``call``: under a compiled step, one per trace."""

    calls = 0

    def call(self, y_true, y_pred):
        type(self).calls += 1
        return super().call(y_true, y_pred)


def _data(n=24, features=5, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    y = rng.choice(C, size=n, p=np.asarray(COUNTS) / sum(COUNTS))
    return x, y


def _model(features=5):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((features,)), keras.layers.Dense(C)])


@pytest.mark.parametrize(
    "schedule",
    [DeferredReweighting(COUNTS, beta=0.9999, start=2), BetaWarmup(COUNTS, beta=0.999, start=0, end=3)],
    ids=["drw", "warmup"],
)
def test_callback_changes_the_weights_inside_one_compiled_step(schedule):
    """With learning rate 0 the model is fixed, so each epoch's loss (one batch) is the loss under that epoch's
    weights; the compiled step is traced once however often the weights change."""
    x, y = _data()
    model = _model()
    loss = _CountingLoss(COUNTS, 0.9999)
    _CountingLoss.calls = 0
    compiled = BACKEND != "torch"  # Keras' torch backend compiles with torch.compile: not what is tested here
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss, jit_compile=compiled or "auto")
    calls_at_epoch_end = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: calls_at_epoch_end.append(loss.calls))
    epochs = 5
    history = model.fit(
        x, y, batch_size=len(x), epochs=epochs, verbose=0, callbacks=[ReweightingCallback(schedule), record]
    )
    logits = np.asarray(keras.ops.convert_to_numpy(model(x)), dtype=np.float64)
    for epoch in range(epochs):
        expected = np.mean(oracle.loss_and_grad(logits, y, schedule(epoch), reduction="none").value)
        np.testing.assert_allclose(history.history["loss"][epoch], expected, rtol=1e-5, err_msg=f"epoch {epoch}")
    np.testing.assert_allclose(loss.class_weights, schedule(epochs - 1), rtol=WEIGHTS_RTOL)
    if compiled:
        assert calls_at_epoch_end[-1] == calls_at_epoch_end[0], calls_at_epoch_end  # no retrace after epoch 0
    else:
        assert np.all(np.diff(calls_at_epoch_end) == 1), calls_at_epoch_end  # eager: one call per step


@pytest.mark.parametrize("validate", [None, True, False])
@pytest.mark.parametrize("jit_compile", [False, True])
def test_fit_and_evaluate_with_every_validate_setting(validate, jit_compile):
    """Every ``validate`` trains and evaluates on every backend (a setting saved on one backend is loaded on the
    others): the loss of a model is the oracle's, however its labels are checked."""
    x, y = _data()
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=ClassBalancedLoss(COUNTS, BETA, validate=validate),
                  jit_compile=jit_compile)  # fmt: skip
    history = model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    logits = np.asarray(keras.ops.convert_to_numpy(model(x)), dtype=np.float64)
    expected = np.mean(oracle.loss_and_grad(logits, y, class_balanced_weights(COUNTS, BETA), reduction="none").value)
    np.testing.assert_allclose(history.history["loss"][0], expected, rtol=1e-5)
    np.testing.assert_allclose(model.evaluate(x, y, batch_size=len(x), verbose=0), expected, rtol=1e-5)


# Backend-specific behaviour, defined only where it applies (each backend's session runs this file).
if BACKEND == "torch":  # torch.compile is the torch backend's compiler

    @pytest.mark.parametrize("validate", [None, True])
    def test_no_graph_breaks_under_torch_compile(validate):
        """Class indices that Keras cast to floats are not read on the host inside torch.compile: a read there
        splits the graph at every call (the value checks are eager-only)."""
        import torch

        loss = ClassBalancedLoss(COUNTS, BETA, validate=validate)
        z, y_keras, y = _case("indices")
        torch._dynamo.reset()
        explained = torch._dynamo.explain(lambda q, t: loss(t, q))(torch.tensor(z), torch.tensor(y_keras))
        assert explained.graph_break_count == 0, explained.break_reasons
        compiled = torch.compile(lambda q, t: loss(t, q))
        expected = np.mean(oracle.loss_and_grad(z, y, class_balanced_weights(COUNTS, BETA), reduction="none").value)
        np.testing.assert_allclose(float(compiled(torch.tensor(z), torch.tensor(y_keras))), expected, rtol=1e-5)


if BACKEND == "tensorflow":  # XLA's clamping gather is the TensorFlow backend's

    def test_unchecked_bad_labels_under_xla_are_nan_never_a_class():
        """Under XLA (``jit_compile=True``; ``"auto"`` on a GPU) nothing checks label values: a non-integral or an
        out-of-range label gives NaN, where XLA's gather would read the nearest class."""
        import tensorflow as tf

        loss = ClassBalancedLoss(COUNTS, BETA, reduction="none")
        z, _, y = _case("indices")
        labels = y.astype(np.float32)
        labels[2], labels[3] = 2.5, 7.0
        values = tf.function(lambda t, q: loss(t, q), jit_compile=True)(tf.constant(labels), tf.constant(z)).numpy()
        assert np.isnan(values[2]) and np.isnan(values[3])
        others = np.delete(np.arange(len(z)), [2, 3])
        expected = oracle.loss_and_grad(z[others], y[others], class_balanced_weights(COUNTS, BETA), reduction="none")
        np.testing.assert_allclose(values[others], expected.value, rtol=2e-6)


def test_callback_finds_the_loss_or_asks_for_it():
    model = _model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    callback = ReweightingCallback(DeferredReweighting(COUNTS, start=1))
    callback.set_model(model)
    with pytest.raises(ValueError, match=r"^loss: the model was compiled with 0 cbloss"):
        callback.on_train_begin()
    with pytest.raises(TypeError, match=r"^loss: must be a cbloss ClassBalancedLoss"):
        ReweightingCallback(DeferredReweighting(COUNTS, start=1), loss="sparse_categorical_crossentropy")


def _two_outputs(features=5):
    keras.utils.set_random_seed(0)
    x = keras.Input((features,))
    return keras.Model(x, {"a": keras.layers.Dense(C, name="a")(x), "b": keras.layers.Dense(C, name="b")(x)})


@pytest.mark.parametrize("structure", ["dict", "list"])
def test_callback_updates_one_loss_that_serves_several_outputs(structure):
    """One ClassBalancedLoss object for two outputs (by name or in output order) is the one loss to update; two
    distinct ones still need ``loss=``."""
    schedule = DeferredReweighting(COUNTS, beta=0.9999, start=1)
    shared = ClassBalancedLoss(weights=np.ones(C))
    model = _two_outputs()
    model.compile(
        optimizer=keras.optimizers.SGD(0.0),
        loss={"a": shared, "b": shared} if structure == "dict" else [shared, shared],
    )
    x, y = _data()
    model.fit(x, {"a": y, "b": y}, batch_size=len(x), epochs=3, verbose=0, callbacks=[ReweightingCallback(schedule)])
    np.testing.assert_allclose(shared.class_weights, schedule(2), rtol=WEIGHTS_RTOL)
    other = _two_outputs()
    other.compile(optimizer="sgd", loss={"a": shared, "b": ClassBalancedLoss(weights=np.ones(C))})
    callback = ReweightingCallback(schedule)
    callback.set_model(other)
    with pytest.raises(ValueError, match=r"^loss: the model was compiled with 2 cbloss"):
        callback.on_train_begin()


@pytest.mark.parametrize("dtype, largest", [("float16", 2048), ("bfloat16", 256)])
def test_class_indices_beyond_what_the_loss_dtype_holds_are_an_error_naming_dtype(dtype, largest):
    """Keras casts y_true to the loss's dtype before the loss sees it: float16 holds the class indices up to 2048,
    bfloat16 up to 256, and rounds a larger one to another class's index. Within, the loss is the float32 loss's
    (to the dtype's rounding); beyond, an error naming ``dtype``, never another class."""
    rng = np.random.default_rng(0)
    for num_classes, ok in ((largest + 1, True), (largest + 2, False)):
        z = rng.normal(size=(3, num_classes)).astype(np.float32)
        y = np.array([0, num_classes - 1, num_classes // 2])
        loss = ClassBalancedLoss(weights=np.ones(num_classes), reduction="none", dtype=dtype)
        if ok:
            want = ClassBalancedLoss(weights=np.ones(num_classes), reduction="none")(y, z)
            got = keras.ops.convert_to_numpy(keras.ops.cast(loss(y, z), "float32"))
            np.testing.assert_allclose(got, keras.ops.convert_to_numpy(want), rtol=2e-2)
        else:
            with pytest.raises(ValueError, match=rf"^dtype: {dtype}, the loss's dtype, holds class indices up to"):
                loss(y, z)


def test_callback_updates_the_loss_it_is_given_not_the_models():
    """With ``loss=``, the callback sets that loss's weights (a model may hold several, or a loss used in a
    custom step); the model's own loss keeps its weights."""
    schedule = DeferredReweighting(COUNTS, beta=0.9999, start=0)
    own, given = ClassBalancedLoss(weights=np.ones(len(COUNTS))), ClassBalancedLoss(weights=np.ones(len(COUNTS)))
    model = _model()
    model.compile(optimizer="sgd", loss=own)
    callback = ReweightingCallback(schedule, loss=given)
    callback.set_model(model)
    callback.on_train_begin()
    callback.on_epoch_begin(0)
    np.testing.assert_allclose(given.class_weights, schedule(0), rtol=1e-6)
    np.testing.assert_array_equal(own.class_weights, np.ones(len(COUNTS)))


def test_a_config_without_weights_rebuilds_them_from_the_counts():
    """A config written by hand (or by an older version) with counts and beta but no ``weights`` entry: the
    weights are the counts' class-balanced weights, as at construction."""
    loss = ClassBalancedLoss(COUNTS, 0.999, loss="focal", gamma=1.0)
    config = {key: value for key, value in loss.get_config().items() if key != "weights"}
    restored = ClassBalancedLoss.from_config(config)
    np.testing.assert_allclose(restored.class_weights, class_balanced_weights(COUNTS, 0.999), rtol=1e-6)


_LOAD = """
import json, sys
import numpy as np
import keras
import cbloss.adapters.keras  # registers the loss with Keras
data = np.load(sys.argv[2])
model = keras.saving.load_model(sys.argv[1])
value = model.evaluate(data["x"], data["y"], batch_size=len(data["y"]), verbose=0)
print(json.dumps({"loss": value, "weights": model.loss.class_weights.tolist(), "config": model.loss.get_config()}))
"""


def test_fit_save_and_load_in_a_new_process(tmp_path):
    """The class weights set during training are saved with the model and restored by load_model elsewhere."""
    x, y = _data()
    model = _model()
    loss = ClassBalancedLoss(COUNTS, 0.9999, loss="focal", gamma=1.0, ignore_index=-1)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    schedule = DeferredReweighting(COUNTS, beta=0.9999, start=2)
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[ReweightingCallback(schedule)])
    path, data = tmp_path / "model.keras", tmp_path / "data.npz"
    model.save(path)
    np.savez(data, x=x, y=y)
    env = {**os.environ, "KERAS_BACKEND": BACKEND}
    run = subprocess.run(
        [sys.executable, "-c", _LOAD, str(path), str(data)], env=env, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr[-3000:]
    restored = json.loads(run.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(restored["weights"], schedule(2), rtol=WEIGHTS_RTOL)
    assert restored["config"] == json.loads(json.dumps(loss.get_config()))
    here = model.evaluate(x, y, batch_size=len(y), verbose=0)
    np.testing.assert_allclose(restored["loss"], here, rtol=1e-5)


def test_docstring_examples_run_as_pasted():
    import cbloss.adapters.keras as module

    check_examples_run_as_pasted(module, ("ClassBalancedLoss", "ReweightingCallback"))
