"""Resolving the array namespace, once, outside any compiled region.

``array_api_compat.array_namespace`` is called without ``api_version=`` on purpose: jax 0.10 rejects every
version string but its own.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np


def namespace_of(*arrays: Any) -> Any:
    """The Array-API namespace of ``arrays``; NumPy (through array-api-compat) for Python scalars/lists."""
    arrays = tuple(a for a in arrays if a is not None and not isinstance(a, (int, float, list, tuple)))
    if not arrays:
        return array_api_compat.array_namespace(np.empty(0))
    return array_api_compat.array_namespace(*arrays)


def check_unmasked(x: Any, name: str) -> None:
    """A ``TypeError`` naming ``name`` for a NumPy masked array: NumPy reads the values under its mask, or hands
    back masked results, so no loss, weight or count would honour the mask (docs/conventions.md §11)."""
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{name}: a NumPy masked array, whose mask would not be honoured; pass plain values (its .compressed() "
            "or .filled(value)), or mark ignored labels with ignore_index"
        )


def as_array(x: Any, name: str) -> Any:
    """``x`` itself if it is an array of a supported namespace; a Python number or (nested) list of numbers as a
    NumPy array; anything else (a NumPy masked array too) a ``TypeError`` naming ``name``."""
    check_unmasked(x, name)
    if is_array(x):
        return x
    try:
        array = np.asarray(x)
    except (TypeError, ValueError):
        array = None
    if array is None or array.dtype.kind not in "biuf":
        raise TypeError(f"{name}: must be an array or a (nested) list of numbers, got {type(x).__name__}")
    if array.dtype.kind != "b" and mixes_bools(x):
        raise TypeError(f"{name}: a list that mixes bools with numbers (NumPy would read True as 1)")
    return array


def mixes_bools(x: Any) -> bool:
    """Whether a (nested) Python list or tuple holds a bool anywhere: made an integer or floating array, its bools
    would become 1 and 0 unseen (the caller asks only when the array it made is not boolean)."""
    if isinstance(x, (bool, np.bool_)):
        return True
    return isinstance(x, (list, tuple)) and any(mixes_bools(v) for v in x)


def device_of(x: Any) -> Any:
    """The device of an array of any supported namespace."""
    return array_api_compat.device(x)


def is_array(x: Any) -> bool:
    return array_api_compat.is_array_api_obj(x)


def to_numpy(x: Any) -> np.ndarray:
    """A host NumPy copy of a (small) array of any supported namespace."""
    if isinstance(x, np.ndarray):
        return x
    if not is_array(x):
        return np.asarray(x)
    if getattr(x, "requires_grad", False):
        x = x.detach()  # a PyTorch tensor in an autograd graph: its values only
    try:
        return np.asarray(x)
    except Exception:
        pass
    try:
        return np.from_dlpack(array_api_compat.to_device(x, "cpu"))
    except Exception:
        return np.from_dlpack(x)


def real_to_numpy(x: Any) -> np.ndarray:
    """:func:`to_numpy`, with the floating dtypes NumPy lacks (bfloat16, float8: PyTorch has no DLPack transfer of
    them, JAX and TensorFlow hand over ml_dtypes' types) as float32, which holds every such value exactly."""
    if is_array(x) and not isinstance(x, np.ndarray):  # NumPy's own ml_dtypes arrays are converted below
        xp = namespace_of(x)
        native = tuple(getattr(xp, name) for name in ("float16", "float32", "float64") if hasattr(xp, name))
        if xp.isdtype(x.dtype, "real floating") and x.dtype not in native:  # bfloat16, PyTorch's float8 types
            x = xp.astype(x, xp.float32)
    return numpy_standard(to_numpy(x))


def numpy_standard(x: Any) -> Any:
    """A NumPy array of one of ml_dtypes' types, which NumPy's own dtype functions do not know (bfloat16, float8,
    int4, ...: kind 'V', or 'f' without being an ``np.floating`` for float8_e5m2), as float32 for a float and
    int64 for an integer, which hold each of their values exactly; anything else as it is."""
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "Vf" or np.issubdtype(x.dtype, np.number):
        return x
    if "float" in x.dtype.name:
        return x.astype(np.float32)
    return x.astype(np.int64) if x.dtype.name.startswith(("int", "uint")) else x
