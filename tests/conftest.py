from __future__ import annotations

import os

import pytest

from tests.backends import all_backends

# nox's tests(<backend>) sessions set CBLOSS_TEST_BACKEND so that each session runs the conformance suite on
# its own backend only (numpy's session covers numpy and array_api_strict); a plain `pytest` runs them all.
# CBLOSS_TEST_DEVICE=cuda puts the PyTorch backend's tensors on the GPU (benchmarks/gpu_check.sh).
_SELECTED = os.environ.get("CBLOSS_TEST_BACKEND")
_GROUPS = {"numpy": {"numpy", "array_api_strict"}}
BACKENDS = [b for b in all_backends() if _SELECTED is None or b.name in _GROUPS.get(_SELECTED, {_SELECTED})]


@pytest.fixture(params=BACKENDS, ids=[b.name for b in BACKENDS])
def backend(request):
    """Every backend of tests/backends; skipped, with the reason, where its framework is not installed."""
    return _installed(request.param)


LOW_PRECISION_BACKENDS = [b for b in BACKENDS if b.low_precision]


@pytest.fixture(params=LOW_PRECISION_BACKENDS, ids=[b.name for b in LOW_PRECISION_BACKENDS])
def low_precision_backend(request):
    """The backends that have float16/bfloat16 (array_api_strict, for one, has neither)."""
    return _installed(request.param)


def _installed(backend):
    missing = backend.missing()
    if missing:
        pytest.skip(f"backend {backend.name}: {missing}")
    return backend


def _namespaces():
    yield "numpy", lambda a: a
    try:
        import array_api_strict as xp
    except ImportError:  # pragma: no cover
        return
    yield "array_api_strict", xp.asarray


@pytest.fixture(params=list(_namespaces()), ids=lambda p: p[0])
def asarray(request):
    """Converts a NumPy array to each framework-free namespace the core supports (NumPy, array_api_strict)."""
    return request.param[1]
