"""What JAX's tools do with the loss and its pytree: ``jax.export`` with a symbolic batch, trees that
``tree_map`` turned into shapes or ``ShapeDtypeStruct``s (printed, compared, hashed), and new weights set inside a
scanned training loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbloss.adapters.jax import ClassBalancedLoss, class_balanced_loss
from tests import oracle

COUNTS = [50, 20, 10, 5, 2]
C = len(COUNTS)


@pytest.mark.parametrize(
    "options, soft",
    [
        (dict(loss="softmax_focal", label_smoothing=0.1), False),  # evaluated on one axis of positions
        (dict(loss="softmax_focal", gamma=0.5), True),
        (dict(loss="softmax_focal", label_smoothing=0.1, reduction="none"), False),
        (dict(loss="focal", label_smoothing=0.1), False),
    ],
)
def test_export_with_a_symbolic_batch_gives_the_jitted_values(options, soft):
    (batch,) = jax.export.symbolic_shape("b")
    weights = np.linspace(0.5, 2.0, C)

    def loss(z, y):
        return class_balanced_loss(z, y, weights, validate=False, **options)

    labels_shape = (batch, 6, C) if soft else (batch, 6)
    exported = jax.export.export(jax.jit(loss))(
        jax.ShapeDtypeStruct((batch, 6, C), jnp.float32),
        jax.ShapeDtypeStruct(labels_shape, jnp.float32 if soft else jnp.int32),
    )
    rng = np.random.default_rng(0)
    for n in (1, 3):
        z = rng.normal(size=(n, 6, C)).astype(np.float32)
        y = rng.dirichlet(np.ones(C), size=(n, 6)).astype(np.float32) if soft else rng.integers(0, C, (n, 6))
        y = y if soft else y.astype(np.int32)
        got, want = exported.call(z, y), jax.jit(loss)(z, y)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)
        ref = oracle.loss_and_grad(z.astype(np.float64), y, weights, **options)
        np.testing.assert_allclose(np.asarray(got), ref.value, rtol=1e-5)


def test_a_tree_mapped_loss_prints_compares_and_hashes():
    """``jax.tree.map(jnp.shape, state)`` and ``jax.eval_shape`` put a shape or a ShapeDtypeStruct where the weights
    were: the loss still prints and compares (by the leaf's identity, as a traced one does)."""
    loss = ClassBalancedLoss(COUNTS, 0.999, loss="focal")
    shapes = jax.tree.map(jnp.shape, {"loss": loss})["loss"]
    abstract = jax.eval_shape(lambda: loss)
    assert shapes.weights == (C,) and shapes.num_classes is None
    assert abstract.num_classes == C and f"num_classes={C}" in repr(abstract)
    assert "num_classes=None" in repr(shapes)
    for tree_mapped in (shapes, abstract):
        assert tree_mapped == tree_mapped and hash(tree_mapped) == hash(tree_mapped)
        assert tree_mapped != loss
    assert loss == ClassBalancedLoss(COUNTS, 0.999, loss="focal")  # concrete weights still compare by value


def test_with_weights_inside_a_scanned_loop_keeps_the_carry_and_checks_the_shape():
    """Traced weights of another dtype (bfloat16 here) are stored in the loss's dtype, so that a loop carrying the
    loss keeps its carry's type; a traced array of the wrong length is refused when it is set, by its shape."""
    loss = ClassBalancedLoss(COUNTS, 0.999)
    table = jnp.asarray(np.linspace(1.0, 2.0, 3 * C).reshape(3, C), jnp.bfloat16)
    z, y = jnp.asarray(np.random.default_rng(1).normal(size=(8, C))), jnp.arange(8) % C

    def step(loss_fn, weights):
        loss_fn = loss_fn.with_weights(weights)
        return loss_fn, loss_fn(z, y)

    final, values = jax.lax.scan(step, loss, table)
    assert final.weights.dtype == loss.weights.dtype
    for row, value in zip(np.asarray(table, np.float64), np.asarray(values), strict=True):
        np.testing.assert_allclose(value, oracle.loss_and_grad(np.asarray(z), np.asarray(y), row).value, rtol=1e-12)
    with pytest.raises(ValueError, match=rf"^weights: expected {C} class weights, got shape \(4,\)"):
        jax.jit(lambda w: loss.with_weights(w).weights)(jnp.ones(4))
