"""The public, validated entry points on arrays of any Array-API namespace."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ._namespace import as_array, device_of, namespace_of, numpy_standard
from .engine import evaluate
from .options import LossOptions, loss_options, with_options_doc
from .primitives import Primitives
from .validation import check_choice, prepare_inputs

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .options import LossKwargs

__all__ = ["class_balanced_loss", "class_balanced_loss_and_grad", "evaluate_arrays"]


def evaluate_arrays(
    logits: Any,
    labels: Any,
    weights: Any,
    opts: LossOptions,
    axis: int,
    validate: bool,
    with_grad: bool,
    sample_weight: Any = None,
) -> tuple[Any, Any]:
    """Check, convert to the compute layout (class axis last, compute dtype), evaluate, convert back."""
    check_choice("validate", validate, (True, False))
    labels_type = type(labels).__name__
    logits, labels = as_array(logits, "logits"), as_array(labels, "labels")
    # NumPy arrays of ml_dtypes' types, unknown to NumPy's dtype functions, are read as float32 (bfloat16, float8)
    # or int64 (int4, ...), which hold their values exactly; the gradient goes back to their dtype
    # (docs/conventions.md §9)
    given_dtype, labels_dtype = logits.dtype, labels.dtype
    logits, labels = numpy_standard(logits), numpy_standard(labels)
    xp = namespace_of(logits)
    if namespace_of(labels) is not xp:  # numbers and lists are NumPy arrays by now
        framework = type(logits).__name__
        raise TypeError(f"labels: must be an array of the logits' framework ({framework}), got {labels_type}")
    device, read_as = device_of(logits), None if labels_dtype == labels.dtype else labels_dtype
    given = prepare_inputs(
        xp, logits, labels, weights, sample_weight, opts, axis, device, validate, read_as, given_dtype
    )
    last = logits.ndim - 1
    z = xp.astype(logits, given.dtype)
    if given.axis != last:
        z = xp.moveaxis(z, given.axis, last)
    # log(0) = -inf is intended (a class with no competitor); keep NumPy from warning about it.
    with np.errstate(divide="ignore", under="ignore", over="ignore", invalid="ignore"):
        loss, grad = evaluate(
            Primitives(xp),
            z,
            given.labels,
            given.weights,
            opts,
            soft=given.soft,
            with_grad=with_grad,
            sample_weight=given.sample_weight,
        )
    if grad is not None:
        if given.axis != last:
            grad = xp.moveaxis(grad, last, given.axis)
        grad = xp.astype(grad, logits.dtype) if given_dtype == logits.dtype else grad.astype(given_dtype)
    return loss, grad


@with_options_doc
def class_balanced_loss(
    logits: Any,
    labels: Any,
    weights: Any = None,
    *,
    sample_weight: Any = None,
    axis: int = -1,
    validate: bool = True,
    **options: Unpack[LossKwargs],
) -> Any:
    """Class-balanced loss of ``logits`` against ``labels`` (docs/conventions.md §4-§8).

    For a class index ``y`` the per-position loss is ``w_y * L_y(z)`` with ``L`` the unweighted loss chosen
    by ``loss``; for a target distribution ``t`` (soft targets, label smoothing) it is ``sum_c t_c w_c L_c(z)``.

    Args:
        logits: floating array of any Array-API namespace, class axis ``axis``.
        labels: integer class indices shaped like ``logits`` without the class axis (a 0-d array for an
            unbatched ``(C,)`` input), or soft targets (probabilities, ``logits``' shape) for mixup/cutmix.
        weights: the (C,) class weights (for example :func:`cbloss.class_balanced_weights`), or None.
        sample_weight: per-position weights shaped like the class indices (the logits without the class axis),
            or None. Each position's loss is multiplied by its sample weight; ``"mean"`` still divides by the
            number of counted positions, ``"weighted_mean"`` by the sum of ``sample_weight * w_y``
            (docs/conventions.md §7).
        axis: the class axis.
        validate: check label values (range, soft targets summing to 1); False skips the pass over them (an
            out-of-range label then reads what the namespace's gather reads, docs/conventions.md §11.2).
        **options: the loss options below.

    Options:
    {options}

    Returns:
        The loss: a 0-d array, or per position for ``reduction="none"``; float32 for float16/bfloat16 logits.

    Example:
        >>> import numpy as np, cbloss
        >>> w = cbloss.class_balanced_weights([100, 10, 1], beta=0.99)
        >>> z = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]]); y = np.array([0, 2])
        >>> round(float(cbloss.class_balanced_loss(z, y, w, loss="focal")), 6)
        1.407893
    """
    opts = loss_options(**options)
    return evaluate_arrays(logits, labels, weights, opts, axis, validate, False, sample_weight)[0]


@with_options_doc
def class_balanced_loss_and_grad(
    logits: Any,
    labels: Any,
    weights: Any = None,
    *,
    sample_weight: Any = None,
    axis: int = -1,
    validate: bool = True,
    **options: Unpack[LossKwargs],
) -> tuple[Any, Any]:
    """``(loss, d loss / d logits)`` from the analytic gradient; arguments as :func:`class_balanced_loss`.

    The gradient has ``logits``' shape and dtype. With ``reduction="none"`` it is the per-position gradient
    ``d loss[p] / d logits[p]`` (positions are independent, so a vector-Jacobian product is
    ``cotangent[..., None] * grad``). Targets and weights are constants.

    Options:
    {options}

    Example:
        >>> import numpy as np, cbloss
        >>> loss, grad = cbloss.class_balanced_loss_and_grad(np.zeros((1, 2)), np.array([1]))
        >>> grad.tolist()
        [[0.5, -0.5]]
    """
    opts = loss_options(**options)
    return evaluate_arrays(logits, labels, weights, opts, axis, validate, True, sample_weight)
