"""The TensorFlow adapter's two kernel sets: TensorFlow's kernels eagerly and in plain tf.function graphs, the
core's shared-exp forms (cbloss.primitives.SharedExpPrimitives) when XLA compiles the trace. The choice is made at
trace time; both sets must match the independent oracle (the conformance suite's checks, reused)."""

from __future__ import annotations

import numpy as np
import pytest

import cbloss.adapters.tensorflow as tfa
from tests import test_conformance as conformance
from tests.backends.tensorflow_backend import BACKEND

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

# every loss, both class counts, saturated logits (P7), every label form, weighted and not, a per-position and a
# reduced result
XLA_SET_CASES = [
    c for c in conformance.CASES if c.shape == "P7" and c.reduction in ("none", "mean") and c.weights != "w0"
]
COMPILED_CASES = [c for c in XLA_SET_CASES if c.C == 5 and c.weights == "w" and c.labels in ("hard", "soft_smooth")]


@pytest.fixture
def used_sets(monkeypatch):
    """The primitive-set classes that the engine received, call by call."""
    seen = []
    original = tfa.evaluate

    def spy(ops, *args, **kwargs):
        seen.append(type(ops))
        return original(ops, *args, **kwargs)

    monkeypatch.setattr(tfa, "evaluate", spy)
    return seen


def _loss_and_grad(z, y):
    with tf.GradientTape() as tape:
        tape.watch(z)
        loss = tfa.class_balanced_loss(z, y, loss="focal")
    return loss, tape.gradient(loss, z)


def test_xla_context_detection():
    assert tfa._in_xla_context() is False  # eager
    seen = {}

    def probe(key):
        seen[key] = tfa._in_xla_context()
        return tf.constant(0.0)

    tf.function(lambda: probe("tf.function"))()
    tf.function(lambda: probe("jit_compile"), jit_compile=True)()
    inner = tf.function(lambda: probe("plain inside jit_compile"))
    tf.function(lambda: inner(), jit_compile=True)()
    assert seen == {"tf.function": False, "jit_compile": True, "plain inside jit_compile": True}


def test_primitive_set_follows_the_compilation(used_sets):
    z = tf.constant(np.linspace(-3.0, 3.0, 12, dtype=np.float32).reshape(4, 3))
    y = tf.constant([0, 1, 2, 1])
    eager = _loss_and_grad(z, y)
    graph = tf.function(_loss_and_grad)(z, y)
    xla = tf.function(_loss_and_grad, jit_compile=True)(z, y)
    assert used_sets == [tfa.TensorFlowPrimitives, tfa.TensorFlowPrimitives, tfa.TensorFlowXlaPrimitives]
    for result in (graph, xla):
        for a, b in zip(result, eager, strict=True):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("jit_compile", [True, False])
def test_keras_fit_uses_the_set_of_its_jit_compile(used_sets, jit_compile):
    """Keras' jit_compile=True compiles train_step with XLA ("auto", the default, means False on a CPU-only
    machine in Keras 3.15)."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])
    model.compile(optimizer="sgd", loss=tfa.ClassBalancedLoss([5, 3, 2, 1], 0.9, loss="focal"), jit_compile=jit_compile)
    x = np.linspace(-1.0, 1.0, 24, dtype=np.float32).reshape(8, 3)
    model.fit(x, np.arange(8) % 4, epochs=1, batch_size=8, verbose=0)
    expected = tfa.TensorFlowXlaPrimitives if jit_compile else tfa.TensorFlowPrimitives
    assert used_sets and set(used_sets) == {expected}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", XLA_SET_CASES, ids=lambda c: c.id)
def test_xla_set_matches_oracle(monkeypatch, case, dtype):
    """The XLA set's definitions, run eagerly (fast; every case has its own shapes and options)."""
    monkeypatch.setattr(tfa, "_primitives", lambda: tfa._XLA_PRIMITIVES)
    logits, labels, weights, cotangent = conformance.inputs(case)
    options = case.options()
    value, grad = BACKEND.loss_and_grad(logits, labels, weights, dtype=dtype, cotangent=cotangent, options=options)
    conformance.check_against_oracle(value, grad, case, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", COMPILED_CASES, ids=lambda c: c.id)
def test_compiled_by_xla_matches_oracle(case, dtype):
    logits, labels, weights, cotangent = conformance.inputs(case)
    tf_dtype = tf.as_dtype(dtype)
    soft = labels.dtype.kind == "f"

    @tf.function(jit_compile=True)
    def step(z, y, w, cot):
        with tf.GradientTape() as tape:
            tape.watch(z)
            loss = tfa.class_balanced_loss(z, y, w, **case.options())
            total = tf.reduce_sum(tf.cast(loss, tf.float64) * cot)
        return loss, tape.gradient(total, z)

    z = tf.cast(tf.constant(logits), tf_dtype)
    y = tf.cast(tf.constant(labels), tf_dtype) if soft else tf.constant(labels)
    value, grad = step(z, y, tf.constant(weights), tf.constant(cotangent, tf.float64))
    conformance.check_against_oracle(np.asarray(value, np.float64), np.asarray(tf.cast(grad, tf.float64)), case, dtype)


def test_without_the_private_helper_the_plain_set_is_used(monkeypatch, used_sets):
    monkeypatch.setattr(tfa, "_graph_in_xla", None)
    z = tf.constant(np.linspace(-3.0, 3.0, 12, dtype=np.float32).reshape(4, 3))
    y = tf.constant([0, 1, 2, 1])
    xla = tf.function(_loss_and_grad, jit_compile=True)(z, y)
    assert used_sets == [tfa.TensorFlowPrimitives]
    for a, b in zip(xla, _loss_and_grad(z, y), strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("loss, plain_kernel", [("focal", "Sigmoid"), ("softmax", "Softmax")])
def test_the_xla_trace_has_the_shared_exp_forms(loss, plain_kernel):
    """The traced graphs themselves: TensorFlow's one-kernel sigmoid/softmax in a plain tf.function, none under
    XLA, where the shared-exp sigmoids and the one-exp softmax of the core stand in their place."""

    def step(z, y):
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = tfa.class_balanced_loss(z, y, [1.0, 2.0, 0.5], loss=loss)
        return value, tape.gradient(value, z)

    specs = (tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None], tf.int32))
    kinds = {}
    for jit_compile in (False, True):
        graph = tf.function(step, jit_compile=jit_compile).get_concrete_function(*specs).graph
        kinds[jit_compile] = {op.type for op in graph.get_operations()}
    assert plain_kernel in kinds[False]
    assert plain_kernel not in kinds[True] and "Exp" in kinds[True]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_graph_softplus_is_the_core_definition_with_relative_digits(dtype):
    """TensorFlowPrimitives.softplus (max(x, 0) as a relu kernel) gives the core's form's values bitwise, with the
    relative digits mpmath gives across the whole range (tf.math.softplus is up to 7 ulps off near the point at
    which it switches to exp(x), which is why the core's form is kept)."""
    import mpmath

    from cbloss.primitives import Primitives

    x = np.concatenate([np.linspace(-700, 700, 2001), np.linspace(-40, 40, 4001)]).astype(dtype)
    got = tfa.TensorFlowPrimitives(tfa.xp).softplus(tf.constant(x)).numpy()
    np.testing.assert_array_equal(got, Primitives(tfa.xp).softplus(tf.constant(x)).numpy())
    with mpmath.workdps(40):
        exact = np.array([float(mpmath.log1p(mpmath.exp(mpmath.mpf(float(v))))) for v in x])
    normal = exact >= np.finfo(dtype).tiny  # TensorFlow flushes subnormal results to zero
    ulps = np.abs(got[normal].astype(np.float64) - exact[normal]) / np.spacing(exact[normal].astype(dtype))
    assert ulps.max() <= 3
