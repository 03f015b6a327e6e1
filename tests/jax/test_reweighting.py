"""The JAX loss as training state: new weights without retracing (cbloss.schedules), copies and pickles, and
losses that differ only in how their weights were made share a tree structure."""

from __future__ import annotations

import copy
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cbloss
from cbloss.adapters.jax import ClassBalancedLoss
from cbloss.schedules import DeferredReweighting

COUNTS = [50, 20, 10, 5, 2]


@pytest.mark.parametrize("loss", ["softmax", "focal"])
def test_with_weights_in_a_jitted_step_does_not_retrace(loss):
    schedule = DeferredReweighting(COUNTS, 0.999, start=1)
    traces = []

    @jax.jit
    def step(loss_fn, logits, labels):
        traces.append(1)
        return loss_fn(logits, labels)

    criterion = ClassBalancedLoss.from_weights(schedule(0), loss=loss)
    logits, labels = jnp.asarray(np.random.default_rng(0).normal(size=(6, 5))), jnp.array([0, 1, 2, 3, 4, 0])
    for epoch in range(3):
        criterion = criterion.with_weights(schedule(epoch))
        want = cbloss.class_balanced_loss(np.asarray(logits), np.asarray(labels), schedule(epoch), loss=loss)
        np.testing.assert_allclose(float(step(criterion, logits, labels)), want, rtol=1e-12)
    assert len(traces) == 1
    with pytest.raises(ValueError, match=r"^weights"):
        criterion.with_weights(np.ones(4))


def test_copy_deepcopy_and_pickle_keep_the_loss():
    criterion = ClassBalancedLoss(COUNTS, 0.99, loss="focal", gamma=1.5)
    logits, labels = jnp.asarray(np.random.default_rng(1).normal(size=(4, 5))), jnp.array([0, 4, 2, 1])
    want = float(criterion(logits, labels))
    for twin in (copy.copy(criterion), copy.deepcopy(criterion), pickle.loads(pickle.dumps(criterion))):
        assert float(twin(logits, labels)) == want
        assert twin.options == criterion.options and twin.beta == criterion.beta


def test_losses_that_differ_only_in_beta_stack_with_tree_map():
    a = ClassBalancedLoss(COUNTS, 0.9, loss="focal")
    b = ClassBalancedLoss(COUNTS, 0.999, loss="focal")
    stacked = jax.tree_util.tree_map(lambda *w: jnp.stack(w), a, b)
    np.testing.assert_allclose(np.asarray(stacked.weights), np.stack([a.weights, b.weights]))
    logits, labels = jnp.zeros((3, 5)), jnp.array([0, 1, 2])
    batched = jax.vmap(lambda loss_fn: loss_fn(logits, labels, validate=False))(stacked)
    np.testing.assert_allclose(np.asarray(batched), [float(a(logits, labels)), float(b(logits, labels))], rtol=1e-12)
