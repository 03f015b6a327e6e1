"""Multi-hot targets (docs/conventions.md §6.5) against optax's sigmoid focal loss and torchvision's formula: for
0/1 targets the class-balanced ``"class"`` loss is ``sum_c w_c (1 - p_t)^gamma BCE_c``; for fractional targets it
is the expected loss, which those libraries do not compute."""

from __future__ import annotations

import numpy as np
import pytest

import cbloss

optax = pytest.importorskip("optax")
jnp = pytest.importorskip("jax.numpy")


def _case(seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, (6, 5)).astype(np.float32).astype(np.float64)
    targets = (rng.uniform(size=(6, 5)) < 0.4).astype(np.float64)
    weights = rng.uniform(0.5, 2.0, 5)
    return logits, targets, weights


def _torchvision_formula(logits, targets, gamma):
    """torchvision.ops.sigmoid_focal_loss with alpha=-1, reduction='none', written out in float64."""
    p = 1.0 / (1.0 + np.exp(-logits))
    ce = np.logaddexp(0.0, logits) - logits * targets
    p_t = p * targets + (1 - p) * (1 - targets)
    return ce * (1 - p_t) ** gamma


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_class_mode_equals_optax_sigmoid_focal_loss_times_class_weights(gamma):
    logits, targets, weights = _case()
    # float64: tests/jax/conftest.py enables jax_enable_x64
    elements = np.asarray(optax.sigmoid_focal_loss(jnp.asarray(logits), jnp.asarray(targets), alpha=None, gamma=gamma))
    want = elements @ weights
    got = cbloss.class_balanced_loss(
        logits, targets, weights, loss="focal", gamma=gamma, multi_label="class", reduction="none"
    )
    np.testing.assert_allclose(got, want, rtol=1e-10)


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0])
def test_class_mode_equals_torchvisions_formula_and_sample_mode_its_mean_weight(gamma):
    logits, targets, weights = _case(1)
    elements = _torchvision_formula(logits, targets, gamma)
    got = cbloss.class_balanced_loss(
        logits, targets, weights, loss="focal", gamma=gamma, multi_label="class", reduction="none"
    )
    np.testing.assert_allclose(got, elements @ weights, rtol=1e-12)
    positives = targets.sum(-1)
    omega = np.where(positives > 0, (targets @ weights) / np.where(positives > 0, positives, 1), 1.0)
    got = cbloss.class_balanced_loss(
        logits, targets, weights, loss="focal", gamma=gamma, multi_label="sample", reduction="none"
    )
    np.testing.assert_allclose(got, omega * elements.sum(-1), rtol=1e-12)


def test_fractional_targets_are_the_expected_loss_not_the_peers():
    logits, _, weights = _case(2)
    targets = np.full_like(logits, 0.25)
    got = cbloss.class_balanced_loss(logits, targets, weights, loss="focal", multi_label="class", reduction="none")
    expected = 0.25 * _torchvision_formula(logits, np.ones_like(logits), 2.0) + 0.75 * _torchvision_formula(
        logits, np.zeros_like(logits), 2.0
    )
    np.testing.assert_allclose(got, expected @ weights, rtol=1e-12)
    assert not np.allclose(got, _torchvision_formula(logits, targets, 2.0) @ weights, rtol=1e-3)
