"""The input checks: the core, the neutral module and the four adapters call these.

Each check raises ``ValueError``/``TypeError`` whose message starts with the argument's name
(docs/conventions.md §11). Checks of option values and shapes are static and always run; checks that read
array *values* (labels in range, soft targets summing to 1, weights finite) are eager: traced code
(``jax.jit``, ``tf.function``) skips them or turns :func:`traced_checks`, the same rules and messages as
0-d predicates, into its framework's assertions.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import numpy as np

from ._namespace import (
    as_array,
    check_unmasked,
    device_of,
    is_array,
    mixes_bools,
    namespace_of,
    real_to_numpy,
    to_numpy,
)

__all__ = [
    "TracedCheck",
    "beyond_stand_in",
    "check_axis",
    "check_beta",
    "check_choice",
    "check_class_axis",
    "check_counts_match",
    "check_gamma",
    "check_gamma_within",
    "check_ignore_index",
    "check_ignore_index_kept",
    "check_label_smoothing",
    "check_label_values",
    "check_num_classes",
    "check_real",
    "check_weights_shape",
    "compute_dtype",
    "extremes",
    "finite_and_nonnegative",
    "holds",
    "host_class_weights",
    "host_sample_weight",
    "ignored_labels",
    "label_shape_rule",
    "labels_out_of_range",
    "multi_hot_counting",
    "multi_hot_invalid",
    "narrow_class_indices",
    "prepare_inputs",
    "prepare_sample_weight",
    "prepare_weights",
    "real_on_host",
    "soft_target_tolerance",
    "soft_targets_invalid",
    "traced_checks",
    "traced_label_checks",
    "validate_labels",
    "wide_class_indices",
]


# ----------------------------------------------------------------------------------------------------------
# Scalars and choices
# ----------------------------------------------------------------------------------------------------------
def check_choice(name: str, value: Any, choices: tuple) -> Any:
    """The one of ``choices`` (strings, bools, None) that ``value`` is, matched by type as well: ``1`` is not
    ``True``, nor is the string ``"False"`` False, and an array is no choice at all; NumPy's bools and strings
    are read as Python's."""
    for choice in choices:
        if isinstance(choice, bool) and isinstance(value, (bool, np.bool_)) and bool(value) is choice:
            return choice
        if value is choice or (isinstance(choice, str) and isinstance(value, str) and value == choice):
            return choice
    raise ValueError(f"{name}: must be one of {list(choices)}, got {value!r}")


def multi_hot_counting(multi_label: Any) -> bool:
    """Whether labels are multi-hot targets: ``multi_label`` True or False, or the loss option's values ("class",
    "sample": True; None: False)."""
    return check_choice("multi_label", multi_label, (True, False, None, "class", "sample")) not in (False, None)


def check_num_classes(num_classes: Any) -> int:
    """The number of classes: a positive Python or NumPy integer (a bool or a float is a ``TypeError``, as for
    ``axis``; an integer below 1 a ``ValueError``)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f"num_classes: must be a positive integer, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes: must be a positive integer, got {num_classes!r}")
    return int(num_classes)


def _bool_or_complex(value: Any) -> bool:
    """Whether a scalar is a bool or complex number of Python, NumPy or (0-d) any framework: ``float`` and ``int``
    would read it as a number (True as 1, ``0.5+0.5j`` as 0.5) without a word."""
    if isinstance(value, (bool, np.bool_, complex, np.complexfloating)):
        return True
    # 0-d arrays of any framework (NumPy's, PyTorch's, JAX's and TensorFlow's dtype names). Looked up on the type:
    # torch.compile cannot trace hasattr/getattr on the symbolic float an option becomes under dynamic shapes.
    dtype = value.dtype if hasattr(type(value), "dtype") else None
    return dtype is not None and any(kind in str(dtype) for kind in ("bool", "complex"))


def _has_axes(value: Any) -> bool:
    """Whether ``value`` is an array with axes (or of unknown rank): no scalar, though PyTorch converts a (1,)
    tensor to a number."""
    try:
        return len(getattr(value, "shape", ())) != 0
    except (TypeError, ValueError):  # a TensorFlow shape of unknown rank
        return True


def check_real(name: str, value: Any, low: float, high: float) -> float:
    """A Python real in [low, high]; NaN, bools, complex numbers and arrays with axes are rejected."""
    # Python numbers first: under torch.compile(dynamic=True) an option is a symbolic number, whose attributes
    # Dynamo cannot look up
    if not isinstance(value, (int, float)):
        check_unmasked(value, name)
    if not isinstance(value, (int, float)) and _has_axes(value):
        raise TypeError(f"{name}: must be a real number (a scalar), got an array of shape {tuple(value.shape)}")
    if _bool_or_complex(value) or (not isinstance(value, (int, float)) and not hasattr(value, "__float__")):
        array_dtype = value.dtype if hasattr(type(value), "dtype") and not isinstance(value, np.generic) else None
        got = type(value).__name__ if array_dtype is None else f"an array of dtype {array_dtype}"
        raise TypeError(f"{name}: must be a real number, got {got}")
    try:
        value = float(value)
    except OverflowError:
        raise ValueError(f"{name}: must be in [{low}, {high}], got an integer beyond float64's range") from None
    except (TypeError, ValueError, AttributeError):  # AttributeError: a TensorFlow variable read inside a graph
        raise TypeError(f"{name}: must be a real number (a scalar), got {value!r}") from None
    # NaN fails both comparisons. No math.isnan: under torch.compile(dynamic=True) an option's float is symbolic,
    # and Dynamo cannot trace math.isnan of it, where a comparison is a guard.
    if not low <= value <= high:
        raise ValueError(f"{name}: must be in [{low}, {high}], got {value!r}")
    return value


def check_axis(axis: Any) -> int:
    """The class axis: a Python or NumPy integer (a bool or a float is rejected, not truncated)."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis: must be an integer, got {axis!r}")
    return int(axis)


def check_beta(beta: Any) -> float:
    return check_real("beta", beta, 0.0, 1.0)


def check_gamma(gamma: Any) -> float:
    """A finite ``gamma >= 0`` (the pairing with the loss is checked by :mod:`cbloss.options`)."""
    gamma = check_real("gamma", gamma, 0.0, math.inf)
    if gamma == math.inf:  # gamma >= 0 here; a comparison, as in check_real
        raise ValueError(f"gamma: must be finite, got {gamma!r}")
    return gamma


def check_label_smoothing(eps: Any) -> float:
    return check_real("label_smoothing", eps, 0.0, 1.0)


def check_ignore_index(ignore_index: Any) -> int | None:
    if ignore_index is None:
        return None
    array = not isinstance(ignore_index, (int, float))  # Python numbers first, as in check_real
    if array:
        check_unmasked(ignore_index, "ignore_index")
    floating = isinstance(ignore_index, float) or (array and "float" in str(getattr(ignore_index, "dtype", "")))
    if _bool_or_complex(ignore_index) or floating or (array and _has_axes(ignore_index)):  # 2.0 is not truncated
        raise TypeError(f"ignore_index: must be an integer or None, got {ignore_index!r}")
    try:  # the comparison too: a concrete tensor inside a TensorFlow graph converts, but compares as a graph tensor
        as_int = int(ignore_index)
        fractional = bool(as_int != ignore_index)
    except (TypeError, ValueError, OverflowError, AttributeError):  # AttributeError: a variable read in a graph
        raise TypeError(f"ignore_index: must be an integer or None, got {ignore_index!r}") from None
    if fractional:
        raise TypeError(f"ignore_index: must be an integer or None, got {ignore_index!r}")
    if not -(2**63) <= as_int < 2**63:
        raise ValueError(f"ignore_index: must fit in int64, got {as_int}")
    return as_int


def real_on_host(name: str, values: Any) -> np.ndarray:
    """``values`` (an array of any supported namespace, a sequence or a number) as a new float64 NumPy array.
    ``TypeError`` naming ``name`` unless they are real numbers (integer or floating): a complex value would lose
    its imaginary part, a string is no number, and a bool array holds no counts or weights (as in every framework).

    Example:
        >>> from cbloss.validation import real_on_host
        >>> real_on_host("weights", [1, 0.5]).tolist()
        [1.0, 0.5]
        >>> real_on_host("weights", [1 + 2j])
        Traceback (most recent call last):
        TypeError: weights: must be real numbers, got dtype complex128
    """
    check_unmasked(values, name)
    try:
        host = real_to_numpy(values)
        numbers_only = host.dtype.kind != "O" or all(
            isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) for v in host.flat
        )
        if host.dtype.kind in "iufO" and numbers_only and not mixes_bools(values):  # None would become NaN
            return host.astype(np.float64)
    except OverflowError:
        raise ValueError(f"{name}: must be finite, got a number beyond float64's range") from None
    except (TypeError, ValueError):
        raise TypeError(f"{name}: must be real numbers, got {values!r}") from None
    if host.dtype.kind != "b" and mixes_bools(values):
        raise TypeError(f"{name}: must be real numbers, got a bool among them")
    raise TypeError(f"{name}: must be real numbers, got dtype {host.dtype}")


# ----------------------------------------------------------------------------------------------------------
# Arrays: dtypes and shapes (static)
# ----------------------------------------------------------------------------------------------------------
def compute_dtype(xp: Any, dtype: Any) -> Any:
    """float16/bfloat16 compute in float32; float32/float64 as they are (docs/conventions.md §9)."""
    if dtype in (xp.float32, xp.float64):
        return dtype
    return xp.float32


_BOOL_LABELS = (
    "labels: must be integer class indices or floating soft targets, got bool (multi-hot targets need "
    "multi_label='class' or 'sample')"
)


def check_class_axis(
    xp: Any,
    logits: Any,
    labels: Any,
    axis: int,
    *,
    multi_label: bool = False,
    labels_dtype: Any = None,
    logits_dtype: Any = None,
) -> tuple[int, bool]:
    """Shapes and dtypes of ``logits`` and ``labels``; returns (the class axis as a non-negative int, whether
    the labels are targets shaped like the logits: soft targets, or multi-hot targets with ``multi_label``, which
    may be bool, integer or floating). A None (unknown, traced) size matches any size. ``labels_dtype`` and
    ``logits_dtype``: the dtypes they were given in, for the errors, where the caller read them in others."""
    if not xp.isdtype(logits.dtype, "real floating"):
        raise TypeError(
            f"logits: must be floating point, got dtype {logits.dtype if logits_dtype is None else logits_dtype}"
        )
    if multi_label:
        if not (xp.isdtype(labels.dtype, "bool") or xp.isdtype(labels.dtype, ("integral", "real floating"))):
            raise TypeError(f"labels: multi-hot targets must be bool, integer or floating, got dtype {labels.dtype}")
        soft = True
    else:
        if xp.isdtype(labels.dtype, "bool"):
            raise TypeError(_BOOL_LABELS)
        soft = xp.isdtype(labels.dtype, "real floating")
        if not soft and not xp.isdtype(labels.dtype, "integral"):
            raise TypeError(f"labels: must be integer class indices or soft targets, got dtype {labels.dtype}")
    axis = check_axis(axis)
    if logits.ndim == 0:
        raise ValueError("logits: must have a class axis, got a 0-d array")
    if not -logits.ndim <= axis < logits.ndim:
        raise ValueError(f"axis: {axis} is out of range for logits of shape {tuple(logits.shape)}")
    axis = axis % logits.ndim
    shape = tuple(logits.shape)
    if shape[axis] == 0:
        raise ValueError(f"logits: the class axis ({axis}) must hold at least one class, got shape {shape}")
    expected = shape if soft else shape[:axis] + shape[axis + 1 :]
    given = tuple(labels.shape)
    mismatch = given != expected and (
        len(given) != len(expected) or any(a != b and None not in (a, b) for a, b in zip(given, expected, strict=False))
    )
    if mismatch and soft and not multi_label and given == expected[:axis] + expected[axis + 1 :]:
        named = labels.dtype if labels_dtype is None else labels_dtype
        raise TypeError(f"labels: class indices must be integers, got dtype {named}")
    if mismatch:
        hint = "; multi-hot targets need multi_label='class' or 'sample'" if not soft and given == shape else ""
        raise ValueError(f"labels: {label_shape_rule(soft, multi_label)} {expected}, got {given}{hint}")
    return axis, soft


def label_shape_rule(soft: bool, multi_label: bool) -> str:
    """The labels' shape rule, for the errors of :func:`check_class_axis` and of a traced check when run."""
    if multi_label:
        return "multi-hot targets must have the logits' shape"
    if soft:
        return "soft targets must have the logits' shape"
    return "class indices must have the logits' shape without the class axis"


# ----------------------------------------------------------------------------------------------------------
# Arrays: values (eager), and the rules traced code asserts
# ----------------------------------------------------------------------------------------------------------
def soft_target_tolerance(xp: Any, dtype: Any) -> float:
    """How far from 1 the sum of soft targets given in ``dtype`` may be: sqrt(eps) of float32/float64, 1e-2 for
    the narrower floats (float16, bfloat16, float8) (a softmax in float32 sums to 1 within ~C ulps)."""
    if dtype == xp.float64:
        return float(np.sqrt(np.finfo(np.float64).eps))
    if dtype == xp.float32:
        return float(np.sqrt(np.finfo(np.float32).eps))
    return 1e-2


def ignored_labels(xp: Any, labels: Any, ignore_index: int | None) -> Any:
    """Boolean, labels' shape: the class indices equal to ``ignore_index``; None where none can be: no
    ``ignore_index``, or one outside the range of the labels' integer dtype (compared with them, it would be
    converted into that dtype and wrap around)."""
    if ignore_index is None:
        return None
    return labels == ignore_index if holds(xp, labels.dtype, ignore_index) else None


def wide_class_indices(xp: Any, labels: Any, widest: Any, ignore_index: int | None = None) -> Any:
    """Integer class indices in ``widest``, the namespace's widest integer dtype (int64; int32 for JAX without
    x64), so that their comparisons with the class count and ``ignore_index`` never wrap (docs/conventions.md
    §6.1): an unsigned label beyond ``widest``'s largest value becomes :func:`beyond_stand_in`, out of range and
    never ``ignore_index``. ``labels`` itself when already in it (read only, never written).

    Example:
        >>> import numpy as np
        >>> from cbloss.validation import wide_class_indices
        >>> wide_class_indices(np, np.array([2, 2**64 - 1], np.uint64), np.int64).tolist()
        [2, 9223372036854775807]
    """
    if labels.dtype == widest:
        return labels
    cast = xp.astype(labels, widest)
    if not xp.isdtype(labels.dtype, "unsigned integer") or xp.iinfo(labels.dtype).max <= xp.iinfo(widest).max:
        return cast
    # The cast wraps what it cannot hold to negative values (-1 could then match ignore_index); an unsigned label
    # is never negative, so those are exactly the ones beyond. Compared after the cast: PyTorch has no
    # comparisons for uint64.
    stand_in = xp.asarray(beyond_stand_in(xp.iinfo(widest), ignore_index), dtype=widest, device=device_of(cast))
    return xp.where(cast < 0, stand_in, cast)


def engine_labels(xp: Any, labels: Any, soft: bool, axis: int, widest: Any, ignore_index: int | None) -> Any:
    """The labels in the engine's layout, in the dtype they were given in, so that their values are checked as given
    (docs/conventions.md §11): targets (soft or multi-hot) with the class axis ``axis`` last, class indices widened to
    ``widest`` (:func:`wide_class_indices`). The caller casts targets to the compute dtype after their checks."""
    if soft:
        return labels if axis == labels.ndim - 1 else xp.moveaxis(labels, axis, -1)
    return wide_class_indices(xp, labels, widest, ignore_index)


def beyond_stand_in(limits: Any, ignore_index: int | None) -> int:
    """What a class index beyond a signed integer dtype (its ``iinfo`` ``limits``) is read as: the dtype's largest
    value, or its smallest (negative) where the largest is ``ignore_index``; out of range either way, never a class
    nor the ignored value."""
    return int(limits.min) if ignore_index == limits.max else int(limits.max)


def holds(xp: Any, dtype: Any, value: int) -> bool:
    """Whether the integer ``dtype`` of ``xp`` holds ``value`` (compared with an array of it, a value outside
    would be converted into it and wrap around)."""
    limits = xp.iinfo(dtype)
    return bool(limits.min <= value <= limits.max)


def narrow_class_indices(host: np.ndarray, dtype: Any, ignore_index: int | None) -> np.ndarray:
    """Integer class indices given on the host in a dtype wider than the signed integer ``dtype`` (JAX without x64
    narrows int64 to int32), narrowed without wrapping (docs/conventions.md §6.1): a label beyond ``dtype`` becomes
    :func:`beyond_stand_in`, out of range like it, never another class or the ignored value.

    Example:
        >>> import numpy as np
        >>> from cbloss.validation import narrow_class_indices
        >>> narrow_class_indices(np.array([1, 2**32 + 1, -(2**40)]), np.int32, None).tolist()
        [1, 2147483647, 2147483647]
    """
    limits = np.iinfo(dtype)
    beyond = (host < limits.min) | (host > limits.max)
    if not beyond.any():
        return host.astype(dtype)
    return np.where(beyond, beyond_stand_in(limits, ignore_index), host).astype(dtype)


def check_ignore_index_kept(ignore_index: int | None, given_dtype: Any, used_dtype: Any) -> None:
    """For class indices given in the integer NumPy-compatible ``given_dtype`` and computed in ``used_dtype`` (JAX
    without x64 narrows int64 and uint32 to int32): an ``ignore_index`` that the first holds and the second does not
    is a ``ValueError`` naming it, as a label equal to it is not kept: it would wrap onto another value, or be read as
    out of range (:func:`beyond_stand_in`), never ignored."""
    if ignore_index is None or given_dtype == used_dtype:
        return
    if holds(np, given_dtype, ignore_index) and not holds(np, used_dtype, ignore_index):
        raise ValueError(
            f"ignore_index: {ignore_index} is beyond {used_dtype}, which the {given_dtype} labels are narrowed to "
            "(JAX without jax_enable_x64): a label equal to it could not be ignored there"
        )


def labels_out_of_range(xp: Any, labels: Any, num_classes: int, ignore_index: int | None) -> Any:
    """Boolean, labels' shape: the class indices outside ``[0, num_classes)`` that are not ``ignore_index``."""
    bad = (labels < 0) | (labels >= num_classes)
    ignored = ignored_labels(xp, labels, ignore_index)
    return bad if ignored is None else bad & ~ignored


def soft_targets_invalid(xp: Any, targets: Any, tolerance: float) -> tuple[Any, Any]:
    """(any entry negative or NaN, any sum along the last axis farther than ``tolerance`` from 1): 0-d booleans.
    NaN is tested for by name: a graph optimiser (TensorFlow's) rewrites ``~(t >= 0)`` to ``t < 0``, which NaN
    fails."""
    negative = xp.any((targets < 0) | xp.isnan(targets))
    off = xp.any(xp.abs(xp.sum(targets, axis=-1) - 1.0) > tolerance)  # a NaN sum needs a NaN or -inf entry
    return negative, off


def extremes(xp: Any, values: Any) -> tuple[Any, Any]:
    """0-d ``(min, max)`` of a non-empty array; NaN propagates into both. One pass where the namespace has the
    fused reduction (PyTorch's ``aminmax``; the Array-API standard has none), two elsewhere. Unsigned integers
    wider than 8 bits are read as float64, which keeps their order: PyTorch has no reductions for them."""
    if xp.isdtype(values.dtype, "unsigned integer") and values.dtype != xp.uint8:
        values = xp.astype(values, xp.float64)
    fused = getattr(xp, "aminmax", None)
    return tuple(fused(values)) if fused is not None else (xp.min(values), xp.max(values))


def multi_hot_invalid(xp: Any, targets: Any) -> Any:
    """0-d boolean: any multi-hot target outside [0, 1] or NaN. Read from the two extremes, ``min < 0`` or
    ``max > 1`` (NaN propagates through both reductions, and fails both comparisons): without temporaries,
    where the entrywise test takes five passes. An empty array (no extremes) is valid."""
    if any(extent == 0 for extent in targets.shape):
        return xp.any(targets < 0)  # False, as a 0-d array of the namespace
    low, high = extremes(xp, targets)
    return ~((low >= 0) & (high <= 1))


# The label rules' messages, shared by the eager checks and the traced ones.
_MULTI_HOT = "labels: multi-hot targets must be in [0, 1] (found a value outside, or NaN)"
_SOFT_NEGATIVE = "labels: soft targets must be finite probabilities >= 0 (found negative or NaN)"
_SOFT_SUM = "labels: soft targets must sum to 1 along the class axis"


def _out_of_range(num_classes: int) -> str:
    return f"labels: class indices must be in [0, {num_classes})"


def _in_a_float_to_check(xp: Any, labels: Any) -> Any:
    """Floating labels in a type narrower than 16 bits (float8) as float32, which holds their values exactly:
    TensorFlow has no comparison, sum or NaN test for them. Other labels as they are."""
    if not xp.isdtype(labels.dtype, "real floating"):
        return labels
    checkable = [getattr(xp, name, None) for name in ("float16", "bfloat16", "float32", "float64")]
    return labels if any(labels.dtype == d for d in checkable if d is not None) else xp.astype(labels, xp.float32)


def check_label_values(
    xp: Any,
    labels: Any,
    num_classes: int,
    soft: bool,
    ignore_index: int | None,
    given_dtype: Any = None,
    *,
    multi_label: bool = False,
) -> None:
    """Eager value checks. Soft targets are checked along the last axis; ``given_dtype``, the targets' dtype as
    the user gave them, sets the tolerance of their sum (:func:`soft_target_tolerance`). Multi-hot targets must
    lie in [0, 1]."""
    if multi_label:
        if not xp.isdtype(labels.dtype, "bool") and bool(multi_hot_invalid(xp, _in_a_float_to_check(xp, labels))):
            raise ValueError(_MULTI_HOT)
        return
    if soft:
        tolerance = soft_target_tolerance(xp, labels.dtype if given_dtype is None else given_dtype)
        labels = _in_a_float_to_check(xp, labels)  # after the tolerance, which is the given dtype's
        negative, off = soft_targets_invalid(xp, labels, tolerance)
        if bool(negative):
            raise ValueError(_SOFT_NEGATIVE)
        if bool(off):
            worst = float(xp.max(xp.abs(xp.sum(labels, axis=-1) - 1.0)))
            raise ValueError(
                f"{_SOFT_SUM} (off by up to {worst:.3g}); multi-hot targets need multi_label='class' or 'sample'"
            )
        return
    if math.prod(labels.shape) == 0:
        return
    low, high = extremes(xp, labels)
    if int(low) >= 0 and int(high) < num_classes:
        return  # every label in range, read from the extremes (the common case)
    bad = labels_out_of_range(xp, labels, num_classes, ignore_index)
    if bool(xp.any(bad)):
        found = np.unique(to_numpy(labels)[to_numpy(bad)]).tolist()[:8]
        raise ValueError(f"{_out_of_range(num_classes)}, got {found}")


def validate_labels(
    labels: Any,
    num_classes: int,
    *,
    ignore_index: int | None = None,
    soft: bool | None = None,
    axis: int = -1,
    multi_label: bool | str | None = False,
) -> None:
    """Check label values eagerly, with the losses' rules (docs/conventions.md §6, §11): before a traced step, or
    on data that has not reached a loss yet.

    Class indices must be in ``[0, num_classes)`` or equal ``ignore_index``; soft targets (floating point, class
    axis ``axis``) must be ``>= 0`` and sum to 1 within the tolerance of their dtype; with ``multi_label``,
    multi-hot targets (bool, integer or floating, class axis ``axis``) must lie in [0, 1]. ``soft`` None infers
    it from the dtype. The labels may be an array of any supported framework (or a sequence), read as a NumPy
    copy, so nothing is staged in a trace.

    Raises:
        ValueError: naming ``labels``, for a value that breaks a rule.
        TypeError: naming ``labels``, for traced labels (inside ``jit``/``vmap``/``grad`` or a graph), which have
            no values to read: there the losses' traced checks apply (docs/conventions.md §11.2).

    Example:
        >>> import numpy as np, cbloss
        >>> cbloss.validate_labels(np.array([0, 2, -100]), 3, ignore_index=-100)
        >>> cbloss.validate_labels(np.array([0, 3]), 3)
        Traceback (most recent call last):
        ValueError: labels: class indices must be in [0, 3), got [3]
    """
    num_classes, axis, ignore_index = check_num_classes(num_classes), check_axis(axis), check_ignore_index(ignore_index)
    soft = check_choice("soft", soft, (None, True, False))
    multi_label = multi_hot_counting(multi_label)
    check_unmasked(labels, "labels")
    if not hasattr(labels, "shape"):
        labels = as_array(labels, "labels")  # a (nested) sequence of numbers, or a TypeError naming labels
        if labels.size == 0:
            labels = labels.astype(np.int64)  # no labels: NumPy's default float dtype does not make them targets
    try:
        host = real_to_numpy(labels)
    except Exception:  # no values to read: JAX and TensorFlow raise different errors for a traced array
        raise TypeError(
            "labels: validate_labels reads label values and cannot run on traced arrays (inside jit/vmap/grad "
            "or a graph) or on PyTorch's meta device; call it before the traced step, or use the loss's traced "
            "checks (JAX: validate='checkify', TensorFlow: validate=True)"
        ) from None
    if host.dtype.kind not in "biuf":  # strings, objects (a ragged tensor), complex numbers
        raise TypeError(f"labels: must be class indices or targets (real numbers), got dtype {host.dtype}")
    if host.dtype.kind == "b" and not multi_label:
        raise TypeError(_BOOL_LABELS)
    if soft is None:
        soft = multi_label or host.dtype.kind == "f"
    if soft:
        if not (host.ndim and -host.ndim <= axis < host.ndim and host.shape[axis] == num_classes):
            kind = "multi-hot" if multi_label else "soft"
            raise ValueError(
                f"labels: {kind} targets must have {num_classes} entries along axis {axis}, got shape {host.shape}"
            )
    elif host.dtype.kind == "f":  # class indices as floats (Keras hands labels over so): integers only
        host = _integral(host, num_classes)
    # the tolerance of soft targets' sums is their given dtype's: floats narrower than float32 (float16, bfloat16,
    # float8, read as float32 here) have 1e-2
    dtype = getattr(labels, "dtype", None)
    name = str(getattr(dtype, "name", dtype))  # NumPy, JAX, TensorFlow: "float16"; PyTorch: "torch.float16"
    narrow = "float" in name and not name.endswith(("float32", "float64"))
    given_dtype = np.dtype(np.float16) if narrow else host.dtype
    if soft:
        host = np.moveaxis(host.astype(np.float64), axis, -1)
    check_label_values(namespace_of(), host, num_classes, soft, ignore_index, given_dtype, multi_label=multi_label)


def _integral(indices: np.ndarray, num_classes: int) -> np.ndarray:
    """Floating class indices as int64: each must be an integer in int64's range (a ``ValueError`` naming labels)."""
    whole = np.isfinite(indices) & (np.trunc(indices) == indices)
    if not whole.all():
        found = np.unique(indices[~whole]).tolist()[:8]
        raise ValueError(f"labels: class indices must be integers, got {found}")
    beyond = (indices < -(2.0**63)) | (indices >= 2.0**63)
    if beyond.any():
        raise ValueError(f"{_out_of_range(num_classes)}, got {np.unique(indices[beyond]).tolist()[:8]}")
    return indices.astype(np.int64)


class TracedCheck(NamedTuple):
    """One rule of :func:`traced_checks`: ``valid``, a 0-d boolean array, is True when the labels pass;
    ``message`` ends in `` {}`` for each of ``values`` (0-d arrays: what was found), in checkify's format."""

    valid: Any
    message: str
    values: tuple = ()


def traced_label_checks(
    xp: Any,
    labels: Any,
    num_classes: int,
    soft: bool,
    ignore_index: int | None,
    tolerance: float,
    multi_label: bool = False,
) -> list[TracedCheck]:
    """The rules of :func:`check_label_values` as 0-d predicates for traced code, which asserts them with its own
    mechanism (``checkify.check``, ``tf.debugging.Assert``). Soft targets are read along the last axis, their
    sums to ``tolerance`` (:func:`soft_target_tolerance` of the dtype they were given in).

    Example:
        >>> import numpy as np
        >>> from cbloss.validation import traced_label_checks
        >>> [rule] = traced_label_checks(np, np.array([0, 4, 5]), 3, soft=False, ignore_index=None, tolerance=0.0)
        >>> bool(rule.valid), rule.message.format(*rule.values)
        (False, 'labels: class indices must be in [0, 3), got 5')
    """
    labels = _in_a_float_to_check(xp, labels)
    if multi_label:
        if xp.isdtype(labels.dtype, "bool"):
            return []  # every bool is 0 or 1
        return [TracedCheck(~multi_hot_invalid(xp, labels), _MULTI_HOT)]
    if any(extent == 0 for extent in labels.shape):
        return []  # no labels (the reductions below have no identity)
    if soft:
        negative, off = soft_targets_invalid(xp, labels, tolerance)
        worst = xp.max(xp.abs(xp.sum(labels, axis=-1) - 1.0))
        return [TracedCheck(~negative, _SOFT_NEGATIVE), TracedCheck(~off, f"{_SOFT_SUM}, off by up to {{}}", (worst,))]
    bad = labels_out_of_range(xp, labels, num_classes, ignore_index)
    # The largest offending label: every other entry reads min(labels), which no offending label is below.
    found = xp.max(xp.where(bad, labels, xp.min(labels)))
    return [TracedCheck(~xp.any(bad), f"{_out_of_range(num_classes)}, got {{}}", (found,))]


# ----------------------------------------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------------------------------------
def finite_and_nonnegative(xp: Any, values: Any) -> Any:
    """0-d boolean: every entry finite and >= 0 (NaN is neither), the rule for class and sample weights."""
    return xp.all(xp.isfinite(values) & (values >= 0))


_SAMPLE_WEIGHT = "sample_weight: must be finite and >= 0"
_TRACED_WEIGHTS = "{}: must be finite and >= 0 in the compute dtype (where a weight beyond its range is inf)"


def traced_checks(
    xp: Any,
    labels: Any,
    num_classes: int,
    soft: bool,
    opts: Any,
    weights: Any = None,
    sample_weight: Any = None,
) -> list[TracedCheck]:
    """Every value rule of :func:`prepare_inputs` as 0-d predicates for traced code, which asserts them with its
    own mechanism: the labels' (:func:`traced_label_checks`; soft targets as given, class axis last, sum to 1
    within the tolerance of their dtype, :func:`engine_labels`) and those of ``weights`` and ``sample_weight``
    where given, read in the compute dtype, as the loss uses them: a weight beyond its range is inf there."""
    tolerance = soft_target_tolerance(xp, labels.dtype)
    multi_label = opts.multi_label is not None
    rules = traced_label_checks(xp, labels, num_classes, soft, opts.ignore_index, tolerance, multi_label)
    if weights is not None:
        rules.append(TracedCheck(finite_and_nonnegative(xp, weights), _TRACED_WEIGHTS.format("weights")))
    if sample_weight is not None:
        rules.append(TracedCheck(finite_and_nonnegative(xp, sample_weight), _TRACED_WEIGHTS.format("sample_weight")))
    return rules


def host_class_weights(weights: Any, num_classes: int | None = None, dtype: Any = None) -> np.ndarray:
    """Given class weights as a float64 NumPy (C,) array, checked: 1-D (of length ``num_classes`` when given),
    finite and >= 0, and with a NumPy floating ``dtype``, the one they are computed in, within its range
    (:func:`check_within`). Accepts arrays of any supported namespace, lists and tuples."""
    host = real_on_host("weights", weights)
    check_weights_shape(host.shape, num_classes)
    if not finite_and_nonnegative(np, host):
        raise ValueError(f"weights: must be finite and >= 0, got {host.tolist()}")
    return host if dtype is None else check_within("weights", host, dtype)


def check_weights_shape(shape: tuple, num_classes: int | None = None) -> None:
    """Class weights' ``shape``: ``(C,)``, non-empty, ``C = num_classes`` when given; else a ``ValueError`` naming
    them. Static: it holds for traced weights, whose shape is known before their values."""
    if len(shape) != 1 or shape[0] == 0 or (num_classes is not None and tuple(shape) != (num_classes,)):
        expected = "a non-empty 1-D sequence" if num_classes is None else f"{num_classes} class weights"
        raise ValueError(f"weights: expected {expected}, got shape {tuple(shape)}")


def host_sample_weight(sample_weight: Any, dtype: Any = None) -> np.ndarray:
    """Given per-position weights as a float64 NumPy array, checked: real, finite and >= 0, and with a NumPy
    floating ``dtype`` within its range (the shape is the caller's to check)."""
    host = real_on_host("sample_weight", sample_weight)
    if not finite_and_nonnegative(np, host):
        raise ValueError(_SAMPLE_WEIGHT)
    return host if dtype is None else check_within("sample_weight", host, dtype)


def check_within(name: str, host: np.ndarray, dtype: Any) -> np.ndarray:
    """``host`` (finite float64 weights) as it is if the NumPy floating ``dtype`` holds every entry; else a
    ``ValueError`` naming ``name``: the cast to ``dtype`` would turn a finite weight into inf (docs/conventions.md
    §9, §11).

    Example:
        >>> import numpy as np
        >>> from cbloss.validation import check_within
        >>> check_within("weights", np.array([1.0, 1e39]), np.float32)
        Traceback (most recent call last):
        ValueError: weights: must be at most 3.402823e+38 (float32's largest, the loss's compute dtype), got 1e+39
    """
    largest, limit = float(np.max(np.abs(host), initial=0.0)), float(np.finfo(dtype).max)
    if largest > limit:
        raise ValueError(
            f"{name}: must be at most {limit:.7g} ({np.dtype(dtype)}'s largest, the loss's compute dtype), "
            f"got {largest:.7g}"
        )
    return host


def check_gamma_within(xp: Any, gamma: float, dtype: Any) -> None:
    """``gamma`` within the range of the compute ``dtype`` of ``xp``, else a ``ValueError`` naming it, as for a
    weight (:func:`check_within`): beyond it, the focal gradient's ``gamma * r * u`` is inf where ``r * u`` is 0,
    and NaN after that product (docs/conventions.md §9)."""
    host = _host_dtype(xp, dtype)
    if gamma > float(np.finfo(host).max):
        check_within("gamma", np.array([gamma]), host)


def _host_dtype(xp: Any, dtype: Any) -> Any:
    """The NumPy dtype of a compute dtype of ``xp`` (float32 or float64, :func:`compute_dtype`)."""
    return np.float64 if dtype == xp.float64 else np.float32


def prepare_weights(
    xp: Any, weights: Any, num_classes: int, dtype: Any, device: Any, validate: bool, like: Any = None
) -> Any:
    """The (C,) weights as an array of ``xp`` in ``dtype`` on ``device``; None stays None. Host weights (NumPy,
    lists) are always checked; ``validate`` decides whether an array of ``xp`` (maybe on a device) is read.
    ``like``: an array of ``xp`` (the logits), whose type tells an array of ``xp`` apart without resolving its
    namespace (array-api-compat's cached lookups are best kept out of a compiled region)."""
    if weights is None:
        return None
    if isinstance(weights, np.ndarray) or not hasattr(weights, "shape") or _foreign(xp, weights, like):
        # Host weights, and arrays of another framework (read by value, never reinterpreted).
        host = host_class_weights(weights, num_classes, _host_dtype(xp, dtype))
        return xp.asarray(host, dtype=dtype, device=device)
    check_weights_shape(tuple(weights.shape), num_classes)
    if not (xp.isdtype(weights.dtype, "real floating") or xp.isdtype(weights.dtype, "integral")):
        raise TypeError(f"weights: must be real numbers, got dtype {weights.dtype}")
    cast = xp.asarray(weights, dtype=dtype, device=device, copy=True)  # the caller's array is never handed back
    # Checked where they are, as computed: finite and >= 0 iff the smallest is >= 0 (NaN is not) and the largest
    # < inf. Read after the cast, which makes a weight beyond the compute dtype's range inf.
    if validate:
        low, high = (float(v) for v in extremes(xp, cast))
        # -0.0 may be a tiny negative weight that the cast rounded: read as given, like any failure
        if not (low >= 0 and high < math.inf) or math.copysign(1.0, low) < 0:
            host_class_weights(weights, num_classes, _host_dtype(xp, dtype))  # raises for what is wrong as given
    return cast


def _foreign(xp: Any, array: Any, like: Any = None) -> bool:
    """Whether ``array`` is a known array of a namespace other than ``xp``; an instance of the type of ``like``,
    an array of ``xp``, is not."""
    if like is not None and isinstance(array, type(like)):
        return False
    return is_array(array) and namespace_of(array) is not xp


def prepare_sample_weight(
    xp: Any, sample_weight: Any, positions: tuple, dtype: Any, device: Any, validate: bool, like: Any = None
) -> Any:
    """Per-position weights as an array of ``xp`` in ``dtype`` on ``device``, shaped ``positions`` (the labels'
    shape without a class axis); None stays None. Host values and arrays of another framework are read by value
    and always checked; ``validate`` decides whether an array of ``xp`` (maybe on a device) is read."""
    if sample_weight is None:
        return None
    on_host = (
        not hasattr(sample_weight, "shape")
        or isinstance(sample_weight, np.ndarray)
        or _foreign(xp, sample_weight, like)
    )
    if on_host:
        sample_weight = host_sample_weight(sample_weight, _host_dtype(xp, dtype))
    if tuple(sample_weight.shape) != tuple(positions):
        raise ValueError(
            f"sample_weight: must have one weight per position, shape {tuple(positions)} (the labels' shape, "
            f"without the class axis for targets), got {tuple(sample_weight.shape)}"
        )
    if on_host:
        return xp.asarray(sample_weight, dtype=dtype, device=device)
    if not (xp.isdtype(sample_weight.dtype, "real floating") or xp.isdtype(sample_weight.dtype, "integral")):
        raise TypeError(f"sample_weight: must be real numbers, got dtype {sample_weight.dtype}")
    given = xp.asarray(sample_weight, device=device)
    cast = xp.astype(given, dtype)
    # As computed, where the cast may have made one inf, and, where it narrowed floats, as given: it may have
    # rounded a tiny negative weight to -0.0, which passes (class weights: prepare_weights). Integers are exact.
    narrowed = given.dtype != cast.dtype and xp.isdtype(given.dtype, "real floating")
    if validate and not (
        bool(finite_and_nonnegative(xp, cast)) and (not narrowed or bool(finite_and_nonnegative(xp, given)))
    ):
        host_sample_weight(sample_weight, _host_dtype(xp, dtype))  # names what is wrong with them as given
    return cast


def check_counts_match(weights: Any, logits: Any, axis: int) -> None:
    """For a loss built from class counts: as many counts as the logits have classes."""
    ndim = len(logits.shape)
    if ndim and -ndim <= axis < ndim and logits.shape[axis] is not None and len(weights) != logits.shape[axis]:
        raise ValueError(
            f"samples_per_class: {len(weights)} class counts were given, but the logits' class axis ({axis}) "
            f"has {logits.shape[axis]} classes"
        )


class Inputs(NamedTuple):
    """Everything but the logits, checked and in the engine's layout: ``labels`` int64 class indices, or targets
    (soft or multi-hot) in the compute dtype with the class axis last; ``weights`` (C,) and ``sample_weight``
    (positions) in the compute dtype on the logits' device, or None; ``soft`` whether the labels are targets;
    ``axis`` the logits' class axis (non-negative); ``dtype`` the compute dtype."""

    labels: Any
    weights: Any
    sample_weight: Any
    soft: bool
    axis: int
    dtype: Any


def prepare_inputs(
    xp: Any,
    logits: Any,
    labels: Any,
    weights: Any,
    sample_weight: Any,
    opts: Any,
    axis: int,
    device: Any,
    check_values: bool,
    labels_dtype: Any = None,
    logits_dtype: Any = None,
) -> Inputs:
    """Check shapes, dtypes and (with ``check_values``, eagerly) values, and convert to the engine's layout. The
    one place the core and the adapters turn user input into :class:`Inputs` (docs/conventions.md §6, §9, §11).
    ``labels_dtype``: the dtype the labels were given in where the caller read them in another (NumPy's bfloat16 as
    float32), which sets their sums' tolerance and is the one errors name; ``logits_dtype`` likewise for errors."""
    multi_label = opts.multi_label is not None
    axis, soft = check_class_axis(
        xp, logits, labels, axis, multi_label=multi_label, labels_dtype=labels_dtype, logits_dtype=logits_dtype
    )
    num_classes = logits.shape[axis]
    dtype = compute_dtype(xp, logits.dtype)
    check_gamma_within(xp, opts.gamma, dtype)
    w = prepare_weights(xp, weights, num_classes, dtype, device, check_values, like=logits)
    positions = tuple(labels.shape[:axis]) + tuple(labels.shape[axis + 1 :]) if soft else tuple(labels.shape)
    sw = prepare_sample_weight(xp, sample_weight, positions, dtype, device, check_values, like=logits)
    if check_values and multi_label:
        # entry by entry, so in the layout given: a class-last view of dense targets is copied to be reduced
        check_label_values(xp, labels, num_classes, soft, opts.ignore_index, multi_label=True)
    labels = engine_labels(xp, labels, soft, axis, xp.int64, opts.ignore_index)  # class indices of any integer dtype
    if check_values and not multi_label:  # targets in the dtype given: their sums are checked to its tolerance
        check_label_values(xp, labels, num_classes, soft, opts.ignore_index, labels_dtype)
    if soft:
        labels = xp.astype(labels, dtype, copy=False)  # read only, never written (docs/conventions.md §14)
    return Inputs(labels, w, sw, soft, axis, dtype)
