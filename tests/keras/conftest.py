"""Keras 3 tests, run under the backend that KERAS_BACKEND names (tensorflow when unset): CI runs this directory
once per backend (noxfile.py, session ``keras``). Skipped, with the reason, when Keras or that backend's framework
is not installed."""

from __future__ import annotations

import importlib
import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")
pytest.importorskip(BACKEND, reason=f"{BACKEND} (KERAS_BACKEND) is not installed")
keras = pytest.importorskip("keras", reason="keras is not installed")
assert keras.backend.backend() == BACKEND
importlib.import_module("cbloss.adapters.keras")
