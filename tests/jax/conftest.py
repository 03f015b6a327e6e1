"""JAX test setup, at import time (before any jax computation initialises a backend): two host CPU devices for
the sharding tests and float64 (jax_enable_x64). pytest imports this conftest before collecting the tests."""

from __future__ import annotations

import os

import pytest

_FLAG = "--xla_force_host_platform_device_count=2"
if _FLAG.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}".strip()

jax = pytest.importorskip("jax", reason="jax is not installed")
jax.config.update("jax_enable_x64", True)
