"""The JAX adapter's docstring examples run and print what they show."""

from __future__ import annotations

import doctest

import pytest

cj = pytest.importorskip("cbloss.adapters.jax")


def test_docstring_examples_run():
    result = doctest.testmod(cj, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
