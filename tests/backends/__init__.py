"""Backends of the cross-framework conformance suite: one module per backend in this package, each defining
``BACKEND``, an instance of :class:`Backend`. Adding a framework means adding a module here; every test that
takes the ``backend`` fixture then runs on it (or is skipped, with the reason, when it is not installed)."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from typing import Any

import numpy as np


class Backend:
    """How the conformance suite drives one backend.

    The suite speaks NumPy with the class axis LAST: float64 logits, int64 labels or float64 soft targets,
    float64 (C,) weights or None. A backend converts them to its own arrays in ``dtype``, calls its public API
    (with the class axis where that API puts it), and differentiates with the framework's own machinery (the
    custom gradient the adapter registers), returning float64 NumPy ``(loss, grad)`` with the class axis last.
    """

    name: str = "?"
    requires: tuple[str, ...] = ()  # importable modules this backend needs
    dtypes: tuple[str, ...] = ("float64", "float32")  # checked against the oracle
    low_precision: tuple[str, ...] = ()  # float16/bfloat16: checked against this backend's float32 result

    def missing(self) -> str | None:
        """Why this backend cannot run here, or None."""
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed"
        return None

    def loss_and_grad(
        self,
        logits: np.ndarray,
        labels: np.ndarray,
        weights: np.ndarray | None,
        *,
        dtype: str,
        cotangent: np.ndarray,
        options: dict[str, Any],
    ) -> tuple[np.ndarray, np.ndarray]:
        """The loss (float64 NumPy, the reduction's shape) and the gradient of ``sum(loss * cotangent)`` with
        respect to the logits (float64 NumPy, logits' shape). ``options`` are the core's keyword options
        (loss, gamma, reduction, label_smoothing, ignore_index)."""
        raise NotImplementedError


def all_backends() -> list[Backend]:
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "BACKEND"):
            found.append(module.BACKEND)
    return found
