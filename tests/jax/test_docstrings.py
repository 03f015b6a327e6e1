"""The JAX adapter's docstring examples run and print what they show."""

from __future__ import annotations

import pytest

from tests.examples import check_examples_run_as_pasted

cj = pytest.importorskip("cbloss.adapters.jax")


def test_docstring_examples_run_as_pasted():
    from cbloss.adapters import _jax_distributed

    check_examples_run_as_pasted(cj, ("class_balanced_loss", "ClassBalancedLoss"))
    check_examples_run_as_pasted(_jax_distributed, ("all_reduce_counts",))  # exported by cbloss.adapters.jax
