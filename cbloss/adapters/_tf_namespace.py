"""A small Array-API namespace over TensorFlow ops: only what the cbloss core uses.

``array-api-compat`` does not support TensorFlow, and ``tf.experimental.numpy`` lacks ``astype``, ``isdtype``
and other standard names, so the TensorFlow adapter passes this namespace to the core
(:func:`cbloss.engine.evaluate` and the losses of :mod:`cbloss.losses`). Every function follows the
standard's signature and semantics for the arguments the core passes; nothing here knows about losses.

Works eagerly, under ``tf.function`` and under XLA (``jit_compile=True``), on tensors with unknown (None)
dimensions: a shape argument may be a ``tf.TensorShape``, a tuple, or a dynamic ``tf.shape`` tensor; axis
arguments are normalised to non-negative values (the gradient of a negative-axis ``take_along_axis`` broke
under XLA in TF 2.21). The ``device`` arguments are honoured with ``tf.device`` where a device is named and
ignored where it is empty (inside a ``tf.function`` placement is TensorFlow's job).
"""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np
import tensorflow as tf

from .._namespace import as_array

__all__ = ["as_tensor", "namespace"]


def _axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < builtins.max(ndim, 1):
        raise ValueError(f"axis {axis} is out of range for an array of rank {ndim}")
    return axis % builtins.max(ndim, 1)


def _axes(axis: Any, ndim: int) -> Any:
    if axis is None:
        return None
    if isinstance(axis, (tuple, list)):
        return [_axis(a, ndim) for a in axis]
    return _axis(axis, ndim)


def _shape(shape: Any, fill: bool = False) -> Any:
    """A shape for ``tf.reshape`` (one unknown dimension becomes -1) or, with ``fill``, for ``tf.ones``
    (every dimension known); a dynamic ``tf.shape`` tensor passes through."""
    if isinstance(shape, tf.Tensor):
        return shape
    if isinstance(shape, int):
        return [shape]
    dims = list(shape.as_list() if isinstance(shape, tf.TensorShape) else shape)
    unknown = [i for i, d in enumerate(dims) if d is None]
    if fill and unknown:
        raise ValueError(f"shape {tuple(dims)}: unknown dimensions; pass a tf.shape tensor instead")
    if len(unknown) > 1:
        raise ValueError(f"shape {tuple(dims)}: more than one unknown dimension; pass a tf.shape tensor instead")
    return [-1 if d is None else int(d) for d in dims]


class _Device:
    """``with tf.device(device)`` where a device is named; nothing otherwise."""

    def __init__(self, device: Any):
        self.scope = tf.device(device) if isinstance(device, str) and device else None

    def __enter__(self) -> None:
        if self.scope is not None:
            self.scope.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self.scope is not None:
            self.scope.__exit__(*exc)


class TensorFlowNamespace:
    """The Array-API functions the cbloss core calls, implemented with TensorFlow ops."""

    __name__ = "cbloss.adapters._tf_namespace"

    bool = tf.bool
    int8 = tf.int8
    int16 = tf.int16
    int32 = tf.int32
    int64 = tf.int64
    uint8 = tf.uint8
    uint16 = tf.uint16
    uint32 = tf.uint32
    uint64 = tf.uint64
    float16 = tf.float16  # not in the standard; TensorFlow's mixed precision uses it
    bfloat16 = tf.bfloat16
    float32 = tf.float32
    float64 = tf.float64
    complex64 = tf.complex64
    complex128 = tf.complex128

    # -- dtypes and creation ---------------------------------------------------------------------------
    @staticmethod
    def isdtype(dtype: Any, kind: Any) -> builtins.bool:
        dtype = tf.as_dtype(dtype)
        if isinstance(kind, tuple):
            return builtins.any(TensorFlowNamespace.isdtype(dtype, k) for k in kind)
        if not isinstance(kind, str):
            return dtype == tf.as_dtype(kind)
        if kind == "bool":
            return dtype == tf.bool
        if kind == "signed integer":
            return dtype.is_integer and not dtype.is_unsigned
        if kind == "unsigned integer":
            return dtype.is_integer and dtype.is_unsigned
        if kind == "integral":
            return dtype.is_integer
        if kind == "real floating":
            return dtype.is_floating
        if kind == "complex floating":
            return dtype.is_complex
        if kind == "numeric":
            return dtype.is_integer or dtype.is_floating or dtype.is_complex
        raise ValueError(f"isdtype: unknown kind {kind!r}")

    @staticmethod
    def iinfo(type: Any, /) -> Any:
        """The standard's ``iinfo`` of an integer dtype (its ``min``, ``max`` and ``bits``)."""
        return np.iinfo(tf.as_dtype(type).as_numpy_dtype)

    @staticmethod
    def asarray(obj: Any, /, *, dtype: Any = None, device: Any = None, copy: Any = None) -> tf.Tensor:
        with _Device(device):
            if isinstance(obj, (tf.Tensor, tf.Variable)):
                x = tf.convert_to_tensor(obj)
                return x if dtype is None or x.dtype == dtype else tf.cast(x, dtype)
            return tf.convert_to_tensor(obj, dtype=dtype)

    @staticmethod
    def astype(x: tf.Tensor, dtype: Any, /, *, copy: builtins.bool = True, device: Any = None) -> tf.Tensor:
        return x if x.dtype == dtype else tf.cast(x, dtype)

    @staticmethod
    def ones(shape: Any, *, dtype: Any = None, device: Any = None) -> tf.Tensor:
        with _Device(device):
            return tf.ones(_shape(shape, fill=True), dtype=dtype or tf.float32)

    @staticmethod
    def zeros(shape: Any, *, dtype: Any = None, device: Any = None) -> tf.Tensor:
        with _Device(device):
            return tf.zeros(_shape(shape, fill=True), dtype=dtype or tf.float32)

    @staticmethod
    def ones_like(x: tf.Tensor, /, *, dtype: Any = None, device: Any = None) -> tf.Tensor:
        return tf.ones_like(x, dtype=dtype)

    @staticmethod
    def zeros_like(x: tf.Tensor, /, *, dtype: Any = None, device: Any = None) -> tf.Tensor:
        return tf.zeros_like(x, dtype=dtype)

    @staticmethod
    def arange(start: Any, /, stop: Any = None, step: Any = 1, *, dtype: Any = None, device: Any = None):
        if stop is None:
            start, stop = 0, start
        with _Device(device):
            return tf.range(start, stop, step, dtype=dtype or tf.int64)

    # -- elementwise --------------------------------------------------------------------------------------
    @staticmethod
    def where(condition: tf.Tensor, x1: Any, x2: Any, /) -> tf.Tensor:
        if not isinstance(x1, (tf.Tensor, tf.Variable)):
            x1 = tf.convert_to_tensor(x1, dtype=getattr(x2, "dtype", None))
        if not isinstance(x2, (tf.Tensor, tf.Variable)):
            x2 = tf.convert_to_tensor(x2, dtype=x1.dtype)
        return tf.where(condition, x1, x2)

    @staticmethod
    def pow(x1: tf.Tensor, x2: Any, /) -> tf.Tensor:
        if not isinstance(x2, (tf.Tensor, tf.Variable)):
            x2 = tf.convert_to_tensor(x2, dtype=x1.dtype)
        return tf.pow(x1, x2)

    isfinite = staticmethod(tf.math.is_finite)
    isinf = staticmethod(tf.math.is_inf)
    isnan = staticmethod(tf.math.is_nan)
    abs = staticmethod(tf.math.abs)
    exp = staticmethod(tf.math.exp)
    expm1 = staticmethod(tf.math.expm1)
    log = staticmethod(tf.math.log)
    log1p = staticmethod(tf.math.log1p)
    sqrt = staticmethod(tf.math.sqrt)
    logical_not = staticmethod(tf.math.logical_not)
    logical_and = staticmethod(tf.math.logical_and)
    logical_or = staticmethod(tf.math.logical_or)

    # -- reductions -----------------------------------------------------------------------------------------
    @staticmethod
    def sum(x: tf.Tensor, /, *, axis: Any = None, dtype: Any = None, keepdims: builtins.bool = False):
        if dtype is not None and x.dtype != dtype:
            x = tf.cast(x, dtype)
        return tf.reduce_sum(x, axis=_axes(axis, x.shape.rank), keepdims=keepdims)

    @staticmethod
    def max(x: tf.Tensor, /, *, axis: Any = None, keepdims: builtins.bool = False) -> tf.Tensor:
        return tf.reduce_max(x, axis=_axes(axis, x.shape.rank), keepdims=keepdims)

    @staticmethod
    def min(x: tf.Tensor, /, *, axis: Any = None, keepdims: builtins.bool = False) -> tf.Tensor:
        return tf.reduce_min(x, axis=_axes(axis, x.shape.rank), keepdims=keepdims)

    @staticmethod
    def any(x: tf.Tensor, /, *, axis: Any = None, keepdims: builtins.bool = False) -> tf.Tensor:
        if x.dtype != tf.bool:
            x = tf.not_equal(x, tf.zeros((), dtype=x.dtype))
        return tf.reduce_any(x, axis=_axes(axis, x.shape.rank), keepdims=keepdims)

    @staticmethod
    def all(x: tf.Tensor, /, *, axis: Any = None, keepdims: builtins.bool = False) -> tf.Tensor:
        if x.dtype != tf.bool:
            x = tf.not_equal(x, tf.zeros((), dtype=x.dtype))
        return tf.reduce_all(x, axis=_axes(axis, x.shape.rank), keepdims=keepdims)

    @staticmethod
    def argmax(x: tf.Tensor, /, *, axis: Any = None, keepdims: builtins.bool = False) -> tf.Tensor:
        if axis is None:
            out = tf.argmax(tf.reshape(x, [-1]), axis=0, output_type=tf.int64)
            return tf.reshape(out, [1] * x.shape.rank) if keepdims else out
        axis = _axis(axis, x.shape.rank)
        out = tf.argmax(x, axis=axis, output_type=tf.int64)
        return tf.expand_dims(out, axis) if keepdims else out

    # -- linear algebra -----------------------------------------------------------------------------------
    @staticmethod
    def matmul(x1: tf.Tensor, x2: tf.Tensor, /) -> tf.Tensor:
        """The standard's ``matmul``: a 1-D operand is a vector (its axis is contracted and dropped), N-D operands
        are stacks of matrices whose batch dimensions broadcast."""
        if x1.shape.rank == 1 and x2.shape.rank == 1:
            return tf.tensordot(x1, x2, 1)
        if x2.shape.rank == 1:
            return tf.linalg.matvec(x1, x2)
        if x1.shape.rank == 1:
            return tf.linalg.matvec(x2, x1, transpose_a=True)
        return tf.linalg.matmul(x1, x2)

    # -- indexing and shapes -----------------------------------------------------------------------------
    @staticmethod
    def take(x: tf.Tensor, indices: tf.Tensor, /, *, axis: Any = None) -> tf.Tensor:
        if axis is None:
            x, axis = tf.reshape(x, [-1]), 0
        return tf.gather(x, indices, axis=_axis(axis, x.shape.rank))

    @staticmethod
    def take_along_axis(x: tf.Tensor, indices: tf.Tensor, /, *, axis: int = -1) -> tf.Tensor:
        """``x`` gathered along ``axis`` at ``indices`` (same rank; other dimensions equal). The axis is made
        non-negative and moved last, where a batched ``tf.gather`` does the work."""
        ndim = x.shape.rank
        axis = _axis(axis, ndim)
        last = ndim - 1
        if axis != last:
            x = TensorFlowNamespace.moveaxis(x, axis, last)
            indices = TensorFlowNamespace.moveaxis(indices, axis, last)
        out = tf.gather(x, indices, axis=last, batch_dims=last)
        return out if axis == last else TensorFlowNamespace.moveaxis(out, last, axis)

    @staticmethod
    def reshape(x: tf.Tensor, /, shape: Any, *, copy: Any = None) -> tf.Tensor:
        return tf.reshape(x, _shape(shape))

    @staticmethod
    def moveaxis(x: tf.Tensor, source: int, destination: int, /) -> tf.Tensor:
        ndim = x.shape.rank
        source, destination = _axis(source, ndim), _axis(destination, ndim)
        if source == destination:
            return x
        perm = [d for d in range(ndim) if d != source]
        perm.insert(destination, source)
        return tf.transpose(x, perm)

    @staticmethod
    def expand_dims(x: tf.Tensor, /, *, axis: int = 0) -> tf.Tensor:
        return tf.expand_dims(x, axis)

    @staticmethod
    def device(x: Any) -> str:
        return getattr(x, "device", "")


namespace = TensorFlowNamespace()


def as_tensor(x: Any, name: str) -> tf.Tensor:
    """``x`` as a dense ``tf.Tensor`` by ``tf.convert_to_tensor`` (its dtypes for Python numbers): a tensor as it
    is; numbers, lists of numbers and other frameworks' arrays under the core's rules (docs/conventions.md §6.1);
    anything else (None, a ragged or sparse tensor) a ``TypeError`` naming ``name``, where TensorFlow's own error
    would not say which argument."""
    if isinstance(x, tf.Tensor):
        return x
    if not tf.is_tensor(x):
        as_array(x, name)  # named errors: not numbers, or a list that mixes bools with numbers
    try:
        return tf.convert_to_tensor(x)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: must be a dense tensor or array of numbers, got {type(x).__name__}") from None
