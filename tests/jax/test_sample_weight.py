"""Per-position sample weights in the JAX adapter (docs/conventions.md §7): each position's loss times its sample
weight; ``"mean"`` divides by the counted positions, ``"weighted_mean"`` by the sum of sample weight times class
weight. Values and gradients against the oracle's per-position losses reduced by that definition, under jit,
vmap and forward mode; the sharded case (``axis_name``) is in test_sharding.py."""

from __future__ import annotations

import numpy as np
import pytest

import cbloss
from tests import oracle

jax = pytest.importorskip("jax", reason="jax is not installed")
jnp = pytest.importorskip("jax.numpy")
cj = pytest.importorskip("cbloss.adapters.jax")

LOSSES = [("softmax", None), ("sigmoid", None), ("focal", 2.0), ("softmax_focal", 0.5)]
FORMS = ["hard", "ignore", "smooth", "soft"]
REDUCTIONS = ["none", "sum", "mean", "weighted_mean"]


def case(form, dtype="float64"):
    """(2, 3) positions of 4 classes, exactly representable in ``dtype``; one sample weight is 0."""
    rng = np.random.default_rng(11)

    def exact(a):
        return a.astype(dtype).astype(np.float64)

    logits = exact(rng.normal(size=(2, 3, 4)) * 2)
    weights = exact(rng.uniform(0.25, 3.0, 4))
    sample_weight = exact(rng.uniform(0.0, 2.0, (2, 3)))
    sample_weight[0, 0] = 0.0
    if form == "soft":
        labels = (rng.multinomial(60, np.full(4, 0.25), (2, 3)) + 1) / 64  # multiples of 1/64: exact in float32
    else:
        labels = rng.integers(0, 4, (2, 3))
        if form == "ignore":
            labels[1, ::2] = -100
    options = {"ignore_index": -100 if form == "ignore" else None, "label_smoothing": 0.1 if form == "smooth" else 0.0}
    return logits, labels, weights, sample_weight, options


def reference(logits, labels, weights, sample_weight, reduction, loss, gamma, options):
    """The oracle's per-position losses and gradients, scaled by ``sample_weight`` and the §7 denominator."""
    soft = labels.dtype.kind == "f"
    counted = np.ones(labels.shape[:2], bool) if soft else labels != -100
    if reduction in ("none", "sum"):
        scale = sample_weight
    elif reduction == "mean":
        scale = sample_weight / counted.sum()
    else:
        share = labels @ weights if soft else weights[np.where(counted, labels, 0)] * counted
        scale = sample_weight / np.sum(sample_weight * share)
    per_position = oracle.loss_and_grad(
        logits, labels, weights, loss=loss, gamma=gamma, reduction="none", cotangent=scale, **options
    )
    values = per_position.value * scale
    return (values if reduction == "none" else values.sum()), per_position.grad


def tolerance(dtype):
    return {"rtol": 1e-12, "atol": 1e-15} if dtype == "float64" else {"rtol": 2e-5, "atol": 2e-6}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("loss", "gamma"), LOSSES)
def test_sample_weight_under_jit_equals_the_oracle(loss, gamma, form, reduction):
    logits, labels, weights, sample_weight, options = case(form)
    want_value, want_grad = reference(logits, labels, weights, sample_weight, reduction, loss, gamma, options)
    options = {**options, "loss": loss, "gamma": gamma, "reduction": reduction}

    def f(q, t, w, s):
        value = cj.class_balanced_loss(q, t, w, sample_weight=s, **options)
        return jnp.sum(value), value

    args = (jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(weights), jnp.asarray(sample_weight))
    (_, value), grad = jax.jit(jax.value_and_grad(f, has_aux=True))(*args)  # every array traced
    np.testing.assert_allclose(np.asarray(value), want_value, **tolerance("float64"))
    np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-10, atol=1e-14)
    # eager, with NumPy sample weights, through the module (positional) and the functional form
    module = cj.ClassBalancedLoss.from_weights(weights, **options)
    np.testing.assert_allclose(np.asarray(module(logits, labels, sample_weight)), want_value, **tolerance("float64"))
    np.testing.assert_allclose(
        np.asarray(cj.class_balanced_loss(logits, labels, weights, sample_weight=sample_weight, **options)),
        want_value,
        **tolerance("float64"),
    )


@pytest.mark.parametrize("form", ["ignore", "soft"])
@pytest.mark.parametrize(("loss", "gamma"), LOSSES)
def test_sample_weight_in_float32(loss, gamma, form):
    logits, labels, weights, sample_weight, options = case(form, "float32")
    options = {**options, "loss": loss, "gamma": gamma, "reduction": "weighted_mean"}
    want_value, want_grad = cbloss.class_balanced_loss_and_grad(
        logits, labels, weights, sample_weight=sample_weight, **options
    )
    labels = jnp.asarray(labels, jnp.float32) if form == "soft" else jnp.asarray(labels)
    value, grad = jax.jit(
        jax.value_and_grad(lambda q, s: cj.class_balanced_loss(q, labels, weights, sample_weight=s, **options))
    )(jnp.asarray(logits, jnp.float32), jnp.asarray(sample_weight, jnp.float32))
    assert value.dtype == grad.dtype == jnp.float32
    np.testing.assert_allclose(float(value), want_value, **tolerance("float32"))
    np.testing.assert_allclose(np.asarray(grad, np.float64), want_grad, **tolerance("float32"))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_sample_weight_under_vmap_and_forward_mode_equals_the_core(reduction):
    rng = np.random.default_rng(2)
    z = rng.normal(0.0, 2.0, (3, 5, 4))
    y = rng.integers(0, 4, (3, 5))
    s = rng.uniform(0.0, 2.0, (3, 5))
    w = rng.uniform(0.5, 2.0, 4)
    options = {"loss": "focal", "reduction": reduction}

    def problem(q, t, sw):
        return cj.class_balanced_loss(q, t, w, sample_weight=sw, **options)

    values = jax.jit(jax.vmap(problem))(jnp.asarray(z), jnp.asarray(y), jnp.asarray(s))
    jacobians = jax.vmap(jax.jacfwd(problem))(jnp.asarray(z), jnp.asarray(y), jnp.asarray(s))
    for b in range(3):
        want, want_grad = cbloss.class_balanced_loss_and_grad(z[b], y[b], w, sample_weight=s[b], **options)
        np.testing.assert_allclose(np.asarray(values[b]), want, rtol=1e-12, atol=1e-15)
        if reduction == "none":
            want_grad = np.einsum("pq,pc->pqc", np.eye(5), want_grad)
        np.testing.assert_allclose(np.asarray(jacobians[b]), want_grad, rtol=1e-12, atol=1e-15)


def test_sample_weight_with_a_class_axis_and_multi_hot_targets():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(2, 4, 3))  # class axis 1
    t = np.moveaxis(rng.dirichlet(np.ones(4), size=(2, 3)), -1, 1)
    s = rng.uniform(0.5, 2.0, (2, 3))
    w = rng.uniform(0.5, 2.0, 4)
    per_position = oracle.loss_and_grad(
        np.moveaxis(z, 1, -1), np.moveaxis(t, 1, -1), w, loss="softmax_focal", reduction="none"
    ).value
    got = cj.class_balanced_loss(z, t, w, sample_weight=s, axis=1, loss="softmax_focal")
    np.testing.assert_allclose(float(got), np.mean(per_position * s), rtol=1e-12)  # "mean": over the positions
    z, multi_hot = rng.normal(size=(5, 4)), rng.uniform(size=(5, 4)) < 0.5
    multi_hot[0] = False  # a position without positives: weight 1 in "sample"
    s = rng.uniform(0.5, 2.0, 5)
    for mode in ("class", "sample"):
        options = {"loss": "focal", "multi_label": mode}
        per_position = oracle.loss_and_grad(z, multi_hot.astype(float), w, reduction="none", **options).value
        got = jax.jit(lambda q, t, sw, options=options: cj.class_balanced_loss(q, t, w, sample_weight=sw, **options))
        np.testing.assert_allclose(float(got(z, multi_hot, s)), np.mean(per_position * s), rtol=1e-12)


def test_bad_sample_weight_is_named():
    logits, labels, weights, sample_weight, _ = case("hard")
    for bad in (np.ones(5), -np.ones((2, 3)), np.full((2, 3), np.nan), jnp.ones((3, 2))):
        with pytest.raises(ValueError, match=r"^sample_weight:"):
            cj.class_balanced_loss(logits, labels, weights, sample_weight=bad)
    with pytest.raises(ValueError, match=r"^sample_weight:"):  # a concrete jax.Array is read, like the labels
        cj.class_balanced_loss(logits, labels, weights, sample_weight=-jnp.ones((2, 3)))
    with pytest.raises(TypeError, match=r"^validate:"):
        jax.jit(lambda s: cj.class_balanced_loss(logits, labels, sample_weight=s, validate=True))(sample_weight)
    from jax.experimental import checkify

    checked = checkify.checkify(
        jax.jit(lambda s: cj.class_balanced_loss(logits, labels, weights, sample_weight=s, validate="checkify"))
    )
    err, _ = checked(-jnp.asarray(sample_weight))
    with pytest.raises(checkify.JaxRuntimeError, match="sample_weight: must be finite and >= 0"):
        err.throw()
    err, value = checked(jnp.asarray(sample_weight))
    err.throw()
    want = cbloss.class_balanced_loss(logits, labels, weights, sample_weight=sample_weight)
    np.testing.assert_allclose(float(value), want, rtol=1e-12)


@pytest.mark.parametrize("validate", [None, True])
def test_closed_over_weights_are_read_and_checked_inside_jit(validate):
    """Concrete jax.Arrays closed over by a jitted function are constants with values (docs/jax.md): checked
    like the labels, and a step with valid ones gives the eager value."""
    logits, labels, weights, sample_weight, _ = case("hard")
    z, y = jnp.asarray(logits), jnp.asarray(labels)
    w, s = jnp.asarray(weights), jnp.asarray(sample_weight)
    want = cbloss.class_balanced_loss(logits, labels, weights, sample_weight=sample_weight)
    step = jax.jit(lambda z: cj.class_balanced_loss(z, y, w, sample_weight=s, validate=validate))
    np.testing.assert_allclose(float(step(z)), want, rtol=1e-6)
    bad_s, bad_w = -s, -w  # concrete: formed outside the traced function
    with pytest.raises(ValueError, match=r"^sample_weight: must be finite and >= 0"):
        jax.jit(lambda z: cj.class_balanced_loss(z, y, w, sample_weight=bad_s, validate=validate))(z)
    with pytest.raises(ValueError, match=r"^weights: must be finite and >= 0"):
        jax.jit(lambda z: cj.class_balanced_loss(z, y, bad_w, sample_weight=s, validate=validate))(z)
