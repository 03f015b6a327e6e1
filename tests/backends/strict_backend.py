"""The core on array_api_strict with its strictest flags (2024.12, no boolean indexing, no data-dependent
shapes): proves the core uses nothing outside the standard. The class axis is moved to 1 to exercise
``axis=``."""

from __future__ import annotations

import numpy as np

import cbloss

from . import Backend
from .numpy_backend import chain


class StrictBackend(Backend):
    name = "array_api_strict"
    requires = ("array_api_strict",)

    def loss_and_grad(self, logits, labels, weights, *, dtype, cotangent, options):
        import array_api_strict as xp

        xp.set_array_api_strict_flags(api_version="2024.12", boolean_indexing=False, data_dependent_shapes=False)
        axis = 1 if logits.ndim > 1 else 0
        z = xp.asarray(np.moveaxis(logits, -1, axis), dtype=getattr(xp, dtype))
        soft = labels.dtype.kind == "f"
        y = xp.asarray(np.moveaxis(labels, -1, axis), dtype=getattr(xp, dtype)) if soft else xp.asarray(labels)
        w = None if weights is None else xp.asarray(weights)
        loss, grad = cbloss.class_balanced_loss_and_grad(z, y, w, axis=axis, **options)
        loss = np.asarray(np.from_dlpack(loss), dtype=np.float64)
        grad = np.moveaxis(np.asarray(np.from_dlpack(grad), dtype=np.float64), axis, -1)
        return loss, chain(loss, grad, cotangent)


BACKEND = StrictBackend()
