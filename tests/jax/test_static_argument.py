"""ClassBalancedLoss as a static argument of jax.jit: equality and hash follow the pytree (configuration, and
the weights by value), so an equal loss built anew reuses the compiled step and different weights retrace."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import cbloss

jax = pytest.importorskip("jax", reason="jax is not installed")
jnp = pytest.importorskip("jax.numpy")
cj = pytest.importorskip("cbloss.adapters.jax")

COUNTS = [60, 25, 9, 3]


def batch(dtype="float64"):
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.normal(0.0, 2.0, (6, 4)), dtype), jnp.asarray([0, 1, 2, 3, 1, 0])


def counted_step():
    """A jitted step taking the loss as a static argument, and the list its traces append to."""
    traces = []

    @functools.partial(jax.jit, static_argnums=0)
    def step(loss_fn, logits, labels):
        traces.append(loss_fn)
        return jax.value_and_grad(loss_fn)(logits, labels)

    return step, traces


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("loss", "gamma"), [("softmax", None), ("focal", 2.0), ("softmax_focal", 0.5)])
def test_equal_losses_share_one_trace_and_new_weights_retrace(loss, gamma, dtype):
    step, traces = counted_step()
    z, y = batch(dtype)
    first = cj.ClassBalancedLoss(COUNTS, 0.99, loss=loss, gamma=gamma, reduction="weighted_mean")
    second = cj.ClassBalancedLoss(COUNTS, 0.99, loss=loss, gamma=gamma, reduction="weighted_mean")
    assert first is not second and first == second and hash(first) == hash(second)
    options = {"loss": loss, "gamma": gamma, "reduction": "weighted_mean"}
    rtol = 1e-12 if dtype == "float64" else 1e-5
    for loss_fn in (first, second):
        value, grad = step(loss_fn, z, y)
        weights = np.asarray(loss_fn.weights, np.float64)
        want, want_grad = cbloss.class_balanced_loss_and_grad(
            np.asarray(z, np.float64), np.asarray(y), weights, **options
        )
        np.testing.assert_allclose(float(value), want, rtol=rtol)
        np.testing.assert_allclose(np.asarray(grad, np.float64), want_grad, rtol=rtol, atol=rtol * 1e-2)
    assert len(traces) == 1

    other = cj.ClassBalancedLoss(COUNTS, 0.9, loss=loss, gamma=gamma, reduction="weighted_mean")
    assert other != first
    value, _ = step(other, z, y)
    assert len(traces) == 2
    weights = cbloss.class_balanced_weights(COUNTS, 0.9)
    want = cbloss.class_balanced_loss(np.asarray(z, np.float64), np.asarray(y), weights, **options)
    np.testing.assert_allclose(float(value), want, rtol=rtol)
    step(first, z, y)  # the first trace is still cached
    assert len(traces) == 2


def test_equality_is_the_configuration_and_the_weights_by_value():
    made = cj.ClassBalancedLoss(COUNTS, 0.99, loss="focal")
    again = cj.ClassBalancedLoss(COUNTS, 0.99, loss="focal")
    assert made == again and hash(made) == hash(again) and made is not again
    # beta and normalize say how the weights were made: a tree transformation drops them, equality ignores them
    rebuilt = jax.tree_util.tree_map(lambda w: w, made)
    assert rebuilt.beta is None and rebuilt == made and hash(rebuilt) == hash(made)
    given = cj.ClassBalancedLoss.from_weights(cbloss.class_balanced_weights(COUNTS, 0.99), loss="focal")
    different = [
        given,  # equal weights, but not from counts: a class-count mismatch blames the weights
        cj.ClassBalancedLoss.from_weights(np.asarray(made.weights) * 2, loss="focal"),
        cj.ClassBalancedLoss.from_weights(np.asarray(made.weights)[:3], loss="focal"),
        jax.tree_util.tree_map(lambda w: w.astype(jnp.float32), made),  # the same values in another dtype
        cj.ClassBalancedLoss(COUNTS, 0.99, loss="focal", gamma=1.0),
        cj.ClassBalancedLoss(COUNTS, 0.99, loss="focal", axis=0),
        cj.ClassBalancedLoss(COUNTS, 0.99, loss="focal", axis_name="data"),
        cj.ClassBalancedLoss.from_weights(None, loss="focal"),
    ]
    for loss_fn in different:
        assert loss_fn != made and made != loss_fn
    assert len({made, given, *different}) == 1 + len(different)
    # the same values are equal whatever array holds them, and -0.0 equals 0.0
    assert made == jax.tree_util.tree_map(np.asarray, made)
    assert cj.ClassBalancedLoss.from_weights([0.0, 1.0]) == cj.ClassBalancedLoss.from_weights([-0.0, 1.0])
    assert hash(cj.ClassBalancedLoss.from_weights([0.0, 1.0])) == hash(cj.ClassBalancedLoss.from_weights([-0.0, 1.0]))
    assert cj.ClassBalancedLoss.from_weights(None) == cj.ClassBalancedLoss.from_weights(None)
    assert made != "not a loss"


def test_a_loss_with_traced_weights_compares_by_identity_and_transforms():
    """Traced weights have no value to hash: the loss compares by their identity, so JAX can hash it when it is
    handed to jit, checkpoint or cond inside a step that took it as an argument."""
    loss_fn = cj.ClassBalancedLoss(COUNTS, 0.99)
    z, y = batch()

    @jax.jit
    def step(loss_fn, logits, labels):
        assert loss_fn == loss_fn.with_weights(loss_fn.weights) and hash(loss_fn) == hash(loss_fn)
        assert loss_fn != loss_fn.with_weights(loss_fn.weights * 2)
        inner = jax.jit(loss_fn)(logits, labels)
        checkpointed = jax.checkpoint(loss_fn)(logits, labels)
        chosen = jax.lax.cond(True, loss_fn, loss_fn, logits, labels)
        return inner, checkpointed, chosen

    for value in step(loss_fn, z, y):
        np.testing.assert_allclose(float(value), float(loss_fn(z, y)), rtol=1e-12)
