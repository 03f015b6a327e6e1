"""count_samples_per_class on JAX inputs (the framework-free cases are in tests/test_weights.py)."""

from __future__ import annotations

import pytest

import cbloss
from tests.test_weights import LABELS, _check_counts


def test_count_from_jax():
    jnp = pytest.importorskip("jax.numpy")
    _check_counts(cbloss.count_samples_per_class(jnp.asarray(LABELS), 5))
    _check_counts(cbloss.count_samples_per_class([jnp.asarray(LABELS[0]), jnp.asarray(LABELS[1])], 5))
