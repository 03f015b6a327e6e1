"""The engine: from logits, labels, weights and options to the reduced loss and its analytic gradient.

Between its conversions and the math an adapter calls this one function, :func:`evaluate` (PyTorch's fused
paths, which replace whole losses, take its pieces: :func:`multi_hot_weights`, the targets' and reductions'
functions). It works on the compute layout (class axis last, compute dtype) and checks no values (it is the
traced path):

1. the target coefficients ``a_c = t_c w_c`` (:mod:`cbloss.targets`) and each position's share of the means'
   denominator (:mod:`cbloss.reductions`);
2. the reduction's factor, folded into the coefficients (every loss is linear in them);
3. the loss's ``hard``, ``dense`` or ``multi_hot`` evaluation (:mod:`cbloss.losses`), then the sum over positions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from ._namespace import device_of
from .losses import LOSSES
from .options import LossOptions
from .primitives import Primitives
from .reductions import hard_shares, multi_hot_shares, reduction_factor, soft_shares
from .targets import Coefficients, label_weights

__all__ = ["MultiHotWeights", "evaluate", "multi_hot_weights"]


def evaluate(
    ops: Primitives,
    z: Any,
    labels: Any,
    weights: Any | None,
    opts: LossOptions,
    *,
    soft: bool,
    with_grad: bool,
    sample_weight: Any | None = None,
    global_sum: Callable[[Any], Any] | None = None,
) -> tuple[Any, Any]:
    """``(loss, d loss / d z)`` (the gradient None without ``with_grad``).

    ``z``: (P..., C) logits in the compute dtype. ``labels``: integer class indices (P...) or, with ``soft``,
    a (P..., C) distribution in the compute dtype. ``weights``: (C,) in the compute dtype on ``z``'s device,
    or None. ``sample_weight``: (P...) in the compute dtype, or None: multiplies each position's loss and its
    ``"weighted_mean"`` share (docs/conventions.md §7). ``global_sum``: maps the local sum of the denominator
    shares to the one to divide by (an adapter's all-reduce across data-parallel replicas). With
    ``reduction="none"`` the loss is per position and the gradient is ``d loss[p] / d z[p]``.
    """
    xp = ops.xp
    spec = LOSSES[opts.kind]
    eps = opts.label_smoothing
    smooth = eps / z.shape[-1]
    if opts.multi_label is not None:
        value, grad = _multi_hot(ops, z, labels, weights, opts, with_grad, sample_weight, global_sum)
    elif soft:
        shares = soft_shares(xp, opts.reduction, labels, weights, sample_weight)
        target = labels if weights is None else labels * weights
        if sample_weight is not None:
            target = target * sample_weight[..., None]
        factor = reduction_factor(xp, opts.reduction, shares, global_sum, like=z)
        scale = _times(factor, sample_weight)  # of the smoothing part, per position
        coefficients = Coefficients(dense=_times(target, factor))
        if eps:
            coefficients = Coefficients(
                dense=(1.0 - eps) * coefficients.dense, smooth=_times(smooth, scale), weights=weights
            )
        value, grad = spec.dense(ops, z, coefficients, opts.gamma, with_grad)
    else:
        labels, valid, scale, label_weight = label_weights(ops, labels, weights, opts.ignore_index, sample_weight, z)
        shares = hard_shares(xp, opts.reduction, label_weight, valid, z.dtype)
        factor = reduction_factor(xp, opts.reduction, shares, global_sum, like=z)
        coef = _times(label_weight, factor)
        if eps:
            coefficients = Coefficients(
                labels=labels,
                label_coef=(1.0 - eps) * coef,
                smooth=_times(smooth, _times(scale, factor)),
                weights=weights,
            )
            value, grad = spec.dense(ops, z, coefficients, opts.gamma, with_grad)
        else:
            value, grad = spec.hard(ops, z, labels, coef, opts.gamma, with_grad)
    loss = value if opts.reduction == "none" else xp.sum(value)
    return loss, grad


def _multi_hot(
    ops: Primitives,
    z: Any,
    targets: Any,
    weights: Any | None,
    opts: LossOptions,
    with_grad: bool,
    sample_weight: Any | None,
    global_sum: Callable[[Any], Any] | None,
) -> tuple[Any, Any]:
    """Multi-hot targets (docs/conventions.md §6.5): the weights and smoothed targets of
    :func:`multi_hot_weights`, then the loss's ``multi_hot`` evaluation."""
    multi_hot = LOSSES[opts.kind].multi_hot
    assert multi_hot is not None  # loss_options admits multi_label only for these losses
    weighted = multi_hot_weights(ops.xp, z, targets, weights, opts, sample_weight, global_sum)
    # every position weighed alike and then added: the class sums need not be formed position by position
    total = opts.reduction != "none" and weighted.position_weights is None
    return multi_hot(ops, z, *weighted, opts.gamma, with_grad, total)


class MultiHotWeights(NamedTuple):
    """What a multi-hot loss weighs: ``targets`` (smoothed), per-class ``class_weights`` (C,) and per-position
    ``position_weights`` (P...), each None for all ones, the reduction's factor folded in."""

    targets: Any
    class_weights: Any | None
    position_weights: Any | None


def multi_hot_weights(
    xp: Any,
    z: Any,
    targets: Any,
    weights: Any | None,
    opts: LossOptions,
    sample_weight: Any | None,
    global_sum: Callable[[Any], Any] | None,
) -> MultiHotWeights:
    """The weights of multi-hot ``targets`` (P..., C) (docs/conventions.md §6.5): the class weights for
    ``"class"``; for ``"sample"`` one weight per position, the mean class weight of its positives (1 without
    positives), from the un-smoothed targets. Times ``sample_weight``, with the reduction's factor folded in; the
    targets smoothed towards 1/2. A position's loss is then ``s_p * sum_c v_c e(z_pc, t_pc)``."""
    class_weights, position_weights = weights, sample_weight
    if opts.multi_label == "sample":
        positives = xp.sum(targets, axis=-1)
        weighted = positives if weights is None else xp.matmul(targets, weights)
        has_positives = positives > 0
        mean_weight = weighted / xp.where(has_positives, positives, xp.ones_like(positives))
        class_weights = None
        position_weights = _times(xp.where(has_positives, mean_weight, xp.ones_like(mean_weight)), sample_weight)
    shares = multi_hot_shares(xp, opts.reduction, position_weights, targets)
    factor = reduction_factor(xp, opts.reduction, shares, global_sum, like=z)
    if factor is not None and not (isinstance(factor, float) and factor == 1.0):
        if position_weights is not None:
            position_weights = position_weights * factor
        elif class_weights is not None:
            class_weights = class_weights * factor
        else:
            class_weights = xp.ones(z.shape[-1:], dtype=z.dtype, device=device_of(z)) * factor
    if opts.label_smoothing:
        targets = (1.0 - opts.label_smoothing) * targets + opts.label_smoothing / 2
    return MultiHotWeights(targets, class_weights, position_weights)


def _times(a: Any, b: Any) -> Any:
    """``a * b``, where None stands for 1 (and a Python 1.0 costs nothing)."""
    if b is None or (isinstance(b, float) and b == 1.0):
        return a
    if a is None or (isinstance(a, float) and a == 1.0):
        return b
    return a * b
