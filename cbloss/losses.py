"""The four class-balanced losses, their analytic gradients and the reductions, written once.

Notation (per position): ``z`` the logits along the class axis (moved last), ``C`` classes, ``w`` the class
weights (1 when ``weights`` is None). A position's target is a distribution ``t`` over the classes (one-hot for a
hard label ``y``; after label smoothing ``t <- (1 - eps) t + eps / C``), and its loss is

    loss = sum_c a_c * L_c(z),    a_c = t_c * w_c,    A = sum_c a_c,

where ``L_c`` is the unweighted loss the position would have with hard label ``c``:

    softmax        L_c = -log p_c,                             p = softmax(z)
    sigmoid        L_c = sum_i  l(x_i),      l(x) = -log sigmoid(x)
    focal          L_c = sum_i  (1 - sigmoid(x_i))**gamma * l(x_i)
    softmax_focal  L_c = (1 - p_c)**gamma * (-log p_c)

with ``x_i = z_i`` if ``i == c`` else ``-z_i``. For a hard label this is ``w_y * L_y``, the paper's CB loss.

Everything is evaluated in log space so that values and gradients are finite for every finite logit and every
gamma >= 0. With ``u = softplus(-x) = -log sigmoid(x)``, ``q = 1 - sigmoid(x) = -expm1(-u)`` (no cancellation):

    sigmoid element   l = u,              dl/dx = -q
    focal element     l = q**gamma * u,   dl/dx = -q**gamma * (gamma * exp(-u) * u + q)

For the softmax focal loss ``p_c = sigmoid(x_c)`` with the margin ``x_c = z_c - logsumexp_{i != c} z_i``, so
``-log p_c = u_c``, ``1 - p_c = q_c``, and its gradient is ``dL_c/dz_j = k_c * (p_j - [j == c])`` with
``k_c = q_c**gamma * (1 + gamma * exp(-u_c) * u_c / q_c)`` (``u / q -> 1`` as ``q -> 0``). Gradients of the
weighted sums follow by linearity:

    softmax        grad = A * p - a
    sigmoid/focal  grad_j = (A - a_j) * dl(-z_j)/dz_j + a_j * dl(z_j)/dz_j
    softmax_focal  grad = p * sum_c a_c k_c - a * k
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np

from ._checks import (
    LOSSES,
    REDUCTIONS,
    check_choice,
    check_gamma,
    check_ignore_index,
    check_label_smoothing,
)
from ._namespace import namespace_of, to_numpy
from .primitives import Primitives
from .weights import host_class_weights

__all__ = ["LossOptions", "class_balanced_loss", "class_balanced_loss_and_grad"]

LossName = Literal["softmax", "sigmoid", "focal", "softmax_focal"]
Reduction = Literal["none", "sum", "mean", "weighted_mean"]


_WITHOUT_FOCUSING = {"focal": "sigmoid", "softmax_focal": "softmax"}


@dataclass(frozen=True)
class LossOptions:
    """The static configuration of a loss, validated once (hashable: usable as a jit static argument)."""

    loss: str = "softmax"
    gamma: float = 0.0
    reduction: str = "mean"
    label_smoothing: float = 0.0
    ignore_index: int | None = None

    @classmethod
    def make(
        cls,
        loss: str = "softmax",
        gamma: float | None = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        ignore_index: int | None = None,
    ) -> LossOptions:
        loss = check_choice("loss", loss, LOSSES)
        return cls(
            loss=loss,
            gamma=check_gamma(gamma, loss),
            reduction=check_choice("reduction", reduction, REDUCTIONS),
            label_smoothing=check_label_smoothing(label_smoothing),
            ignore_index=check_ignore_index(ignore_index),
        )

    @property
    def kind(self) -> str:
        """The loss actually evaluated: a focal loss with gamma = 0 *is* its non-focal loss, exactly."""
        if self.gamma == 0.0:
            return _WITHOUT_FOCUSING.get(self.loss, self.loss)
        return self.loss


class Terms(NamedTuple):
    """Per-position pieces of a loss: ``value`` (P), ``grad`` = d value / d z (P, C) or None, and ``norm``
    (P), each position's share of the ``mean``/``weighted_mean`` denominator (0 for ignored positions), or
    None when not asked for."""

    value: Any
    grad: Any
    norm: Any


# ----------------------------------------------------------------------------------------------------------
# Elementwise pieces (x = the logit signed towards its target, see the module docstring)
# ----------------------------------------------------------------------------------------------------------
def _power(xp: Any, q: Any, gamma: float) -> Any:
    """``q ** gamma``: ``q`` itself for gamma = 1, and gamma = 2 as one multiplication (PyTorch's CPU pow is a
    slower pass there). The result may be ``q`` itself: update it in place only where ``q`` is not read after."""
    if gamma == 1.0:
        return q
    return q * q if gamma == 2.0 else xp.pow(q, gamma)


def _binary_terms(ops: Primitives, y: Any, gamma: float, with_grad: bool, *, reuse: bool = False) -> tuple[Any, Any]:
    """(l(x), dl/dy) of the sigmoid (gamma = 0) or sigmoid-focal element loss at ``x = -y``; the callers
    form ``y = -x`` directly (one pass fewer), and the slope is taken with respect to ``y`` (= -dl/dx).
    ``reuse``: ``y`` is a temporary the primitives may overwrite."""
    xp = ops.xp
    if gamma == 0.0 or not with_grad:
        u, q = ops.softplus_and_sigmoid(y)  # u = -log sigmoid(x), q = sigmoid(y) = 1 - sigmoid(x), exact near 0
        return (u, (q if with_grad else None)) if gamma == 0.0 else (_power(xp, q, gamma) * u, None)
    # slope starts as sigmoid(x) = sigmoid(-y), not 1 - q: it keeps its relative digits where it is tiny.
    u, q, slope = ops.softplus_and_sigmoids(y, reuse=reuse)
    modulation = _power(xp, q, gamma)
    value = modulation * u
    # In-place updates of the temporaries (rebinding on immutable arrays):
    # dl/dy = q**gamma * (gamma * sigmoid(-y) * u + q) = gamma * sigmoid(-y) * value + q**(gamma + 1), which
    # needs u only through value: under XLA log1p's pass then fuses into value's (one (P, C) buffer fewer).
    modulation *= q  # for gamma = 1 modulation is q itself, squared here in place: q is not read after this
    return value, ops.multiply_add(modulation, slope, value, gamma)


class _Margin(NamedTuple):
    """Per-class pieces of the softmax focal loss at ``y = -(margin)``: ``u = softplus(y) = -log p_c``,
    ``q = sigmoid(y) = 1 - p_c``, ``p = sigmoid(-y) = p_c`` (each with its relative digits) and
    ``modulation = q**gamma``; ``value = modulation * u``."""

    value: Any
    u: Any
    q: Any
    p: Any
    modulation: Any


def _margin_terms(ops: Primitives, z: Any, log_rest: Any, gamma: float) -> _Margin:
    """The softmax focal pieces from ``log_rest = log sum_{i != c} exp(z_i - M)`` and the class logit shifted
    by the same ``M``: ``z`` here is ``z_c - M``."""
    u, q, p = ops.softplus_and_sigmoids(log_rest - z, reuse=True)
    modulation = _power(ops.xp, q, gamma)
    return _Margin(modulation * u, u, q, p, modulation)


def _focal_slope(ops: Primitives, m: _Margin, gamma: float) -> Any:
    """``k = q**gamma * (1 + gamma * p * u / q)``. For ``gamma >= 1`` as ``q**gamma + gamma * p * u * q**(gamma - 1)``
    (no division; ``q**0 = 1``), one multiply_add; below 1 ``q**(gamma - 1)`` is infinite at ``q = 0``, so there
    ``u / q`` is taken as 1 where ``q = 0`` (its limit: ``u = -log(1 - q) ~ q``). The pieces of ``m`` are spent:
    the result may reuse them (for gamma = 1 the modulation is ``q`` itself)."""
    xp = ops.xp
    if gamma == 1.0:
        return ops.multiply_add(m.modulation, m.p, m.u, gamma)
    if gamma > 1.0:
        return ops.multiply_add(m.modulation, m.p * m.u, _power(xp, m.q, gamma - 1.0), gamma)
    positive = m.q > 0
    ratio = xp.where(positive, m.u / xp.where(positive, m.q, xp.ones_like(m.q)), xp.ones_like(m.q))
    return m.modulation * (1.0 + gamma * m.p * ratio)


# ----------------------------------------------------------------------------------------------------------
# Hard labels, no smoothing: only the label's column enters; no (P, C) target is formed for softmax.
# ----------------------------------------------------------------------------------------------------------
def _hard_terms(
    ops: Primitives, z: Any, labels: Any, alpha: Any, opts: LossOptions, with_grad: bool, grad_alpha: Any = None
):
    """``grad_alpha``: the per-position coefficient of the gradient, ``alpha`` times the caller's gradient scale
    (``alpha`` itself when None), so that the scale costs no (P, C) pass."""
    xp = ops.xp
    kind = opts.kind
    grad_alpha = alpha if grad_alpha is None else grad_alpha
    if kind == "softmax":
        # value w_y * (logsumexp(z) - z_y), gradient grad_alpha * (softmax(z) - onehot(y)): with the gradient, one
        # exponential pass gives both the softmax and the logsumexp.
        if not with_grad:
            return alpha * (ops.logsumexp(z)[..., 0] - ops.take_label(z, labels)), None
        p, lse = ops.softmax_and_logsumexp(z)
        p *= grad_alpha[..., None]  # the temporary becomes the gradient, in place
        return alpha * (lse - ops.take_label(z, labels)), ops.add_at_label(p, labels, -grad_alpha)
    if kind in ("sigmoid", "focal"):
        # x_i = z_i at the label, -z_i elsewhere; y = -x. d value / dz = -dl/dy at the label, dl/dy elsewhere.
        if kind == "sigmoid" and not ops.fuses_elementwise:
            # softplus(y) and sigmoid(y) are taken at y = z everywhere (no (P, C) copy of z with its label column
            # negated), and the label's column is then replaced by their values at y = -z_y, computed on (P...)
            # alone: without fusion, two elementwise functions of P values cost less than the (P, C) copy and a
            # second gather (measured in eager PyTorch: -10% on a dense (4, 19, 128, 128) input; under XLA it is
            # 15-60% slower). The focal element's longer chain would cost more on the label's values than the copy.
            element, slope = _binary_terms(ops, z, 0.0, with_grad)
            at_label, slope_at_label = _binary_terms(ops, -ops.take_label(z, labels), 0.0, with_grad)
            element = ops.put_at_label(element, labels, at_label)
            grad = None if slope is None else ops.put_at_label(slope, labels, -slope_at_label)
        else:
            element, slope = _binary_terms(ops, ops.negate_at_label(z, labels), opts.gamma, with_grad, reuse=True)
            grad = None if slope is None else ops.negate_at_label(slope, labels, reuse=True)
        value = alpha * xp.sum(element, axis=-1)
        if grad is None:
            return value, None
        grad *= grad_alpha[..., None]
        return value, grad
    # softmax_focal, gamma > 0. Everything is shifted by M = logsumexp(z), so that p = softmax(z) (one fused pass
    # where the backend has one) is also exp(z - M).
    # p's label column is zeroed in place: its row sums are then rest = sum_{i != y} exp(z_i - M), summed directly
    # (no 1 - p_y cancellation), and the rest of p is the gradient's off-label part.
    p, shift = ops.softmax_and_logsumexp(z)
    p = ops.put_at_label(p, labels, 0.0)
    rest = xp.sum(p, axis=-1)
    margin = _margin_terms(ops, ops.take_label(z, labels) - shift, xp.log(rest), opts.gamma)
    value = alpha * margin.value
    if not with_grad:
        return value, None
    slope = grad_alpha * _focal_slope(ops, margin, opts.gamma)
    p *= slope[..., None]  # the temporary becomes the gradient, in place
    # at the label k * (p_y - 1) = -k * rest: exact where p_y is close to 1
    return value, ops.put_at_label(p, labels, -slope * rest)


# ----------------------------------------------------------------------------------------------------------
# A dense target coefficient a (P, C): soft targets, or hard labels with label smoothing.
# ----------------------------------------------------------------------------------------------------------
def _dense_terms(ops: Primitives, z: Any, a: Any, opts: LossOptions, with_grad: bool):
    xp = ops.xp
    kind = opts.kind
    total = xp.sum(a, axis=-1, keepdims=True)  # A
    if kind == "softmax":
        logp = ops.log_softmax(z)
        value = -xp.sum(a * logp, axis=-1)
        return value, (total * xp.exp(logp) - a if with_grad else None)
    if kind in ("sigmoid", "focal"):
        # pos: x = z (y = -z, d/dz = -d/dy); neg: x = -z (y = z, d/dz = d/dy).
        pos, pos_slope = _binary_terms(ops, -z, opts.gamma, with_grad, reuse=True)  # -z: a temporary of our own
        neg, neg_slope = _binary_terms(ops, z, opts.gamma, with_grad)
        rest = total - a
        value = xp.sum(rest * neg + a * pos, axis=-1)
        return value, (rest * neg_slope - a * pos_slope if with_grad else None)
    # softmax_focal: log sum_{i != c} exp(z_i - M) for every c. For c != argmax the subtraction T - e_c is
    # well conditioned (T - e_c >= e_top = 1 >= e_c); for the top class it is summed directly.
    num_classes = z.shape[-1]
    m = xp.max(z, axis=-1, keepdims=True)
    shifted = z - m
    exp_shifted = xp.exp(shifted)
    top = ops.label_mask(xp.argmax(z, axis=-1), num_classes)
    everything = xp.sum(exp_shifted, axis=-1, keepdims=True)
    rest_top = xp.sum(xp.where(top, xp.zeros_like(exp_shifted), exp_shifted), axis=-1, keepdims=True)
    rest = xp.where(top, rest_top, everything - exp_shifted)
    margin = _margin_terms(ops, shifted, xp.log(rest), opts.gamma)
    value = xp.sum(a * margin.value, axis=-1)
    if not with_grad:
        return value, None
    slope = a * _focal_slope(ops, margin, opts.gamma)
    p = exp_shifted / everything
    return value, p * xp.sum(slope, axis=-1, keepdims=True) - slope


def _soft_norm(xp: Any, labels: Any, weights: Any | None, opts: LossOptions, with_norm: bool = True) -> Any:
    """Soft targets' denominator shares: ``sum_c t_c w_c`` (un-smoothed) for ``weighted_mean``, else 1; None
    without ``with_norm``."""
    if not with_norm:
        return None
    if opts.reduction == "weighted_mean":
        return xp.sum(labels if weights is None else labels * weights, axis=-1)
    return xp.ones_like(labels[..., 0])


def _hard_coefficients(
    ops: Primitives, labels: Any, weights: Any | None, opts: LossOptions, dtype: Any, with_norm: bool = True
):
    """(labels, valid, alpha, norm) for class indices: the labels with ignored positions set to class 0 (any
    class would do: their coefficients are 0), the boolean mask of counted positions (None without
    ``ignore_index``), each position's weight ``alpha = w_y`` (0 where ignored) and its denominator share
    (``alpha`` for ``weighted_mean``, else 1 per counted position; None without ``with_norm``)."""
    xp = ops.xp
    valid = None
    if opts.ignore_index is not None:
        valid = labels != opts.ignore_index
        labels = xp.where(valid, labels, xp.zeros_like(labels))
    if weights is None:
        alpha = xp.ones_like(labels, dtype=dtype)
    else:
        alpha = ops.take_weights(weights, labels)
    if valid is not None:
        alpha = xp.where(valid, alpha, xp.zeros_like(alpha))
    if not with_norm:
        norm = None
    elif opts.reduction == "weighted_mean":
        norm = alpha
    elif valid is not None:
        norm = xp.astype(valid, dtype)
    else:
        norm = xp.ones_like(labels, dtype=dtype)
    return labels, valid, alpha, norm


def position_norms(ops: Primitives, labels: Any, weights: Any | None, opts: LossOptions, *, soft: bool, dtype: Any):
    """Each position's share of the ``mean``/``weighted_mean`` denominator (``Terms.norm``), alone: for an
    adapter whose fused kernel computes the per-position values itself. Arguments as for :func:`loss_terms`."""
    if soft:
        return _soft_norm(ops.xp, labels, weights, opts)
    return _hard_coefficients(ops, labels, weights, opts, dtype)[3]


def loss_terms(
    ops: Primitives,
    z: Any,
    labels: Any,
    weights: Any | None,
    opts: LossOptions,
    *,
    soft: bool,
    with_grad: bool = True,
    grad_scale: Callable[[Any], Any] | None = None,
    with_norm: bool = True,
) -> Terms:
    """Per-position value, gradient and denominator share. ``z`` is (P..., C) in the compute dtype with the
    class axis last; ``labels`` integer (P...) or, with ``soft``, a (P..., C) distribution in the compute
    dtype; ``weights`` (C,) in the compute dtype on ``z``'s device, or None. No value checks happen here
    (this is the traced path); see :func:`class_balanced_loss` for the validated entry point.

    ``grad_scale``: None, or a function of ``norm`` (the denominator shares) returning a scalar that the
    returned gradient is multiplied by, folded into the per-position coefficients for hard labels (no extra
    (P, C) pass). An adapter passes the reduction's factor (``reduce_terms`` of a unit gradient), so that
    the gradient comes out reduced.

    ``with_norm=False``: ``Terms.norm`` is None, for a caller that reduces without it (a sum, or a mean whose
    factor is folded into the weights); ``grad_scale`` needs the shares and computes them anyway."""
    xp = ops.xp
    eps = opts.label_smoothing
    num_classes = z.shape[-1]
    with_norm = with_norm or grad_scale is not None
    if soft:
        norm = _soft_norm(xp, labels, weights, opts, with_norm)
        a = labels if weights is None else labels * weights
        if eps:
            target = (1.0 - eps) * labels + eps / num_classes
            a = target if weights is None else target * weights
        value, grad = _dense_terms(ops, z, a, opts, with_grad)
        if grad is not None and grad_scale is not None:
            grad *= grad_scale(norm)
        return Terms(value, grad, norm)

    labels, valid, alpha, norm = _hard_coefficients(ops, labels, weights, opts, z.dtype, with_norm)
    if eps:
        onehot = xp.astype(ops.label_mask(labels, num_classes), z.dtype)
        scale = 1.0 if valid is None else xp.astype(valid, z.dtype)[..., None]
        target = ((1.0 - eps) * onehot + eps / num_classes) * scale
        a = target if weights is None else target * weights
        value, grad = _dense_terms(ops, z, a, opts, with_grad)
        if grad is not None and grad_scale is not None:
            grad *= grad_scale(norm)
    else:
        grad_alpha = alpha * grad_scale(norm) if with_grad and grad_scale is not None else None
        value, grad = _hard_terms(ops, z, labels, alpha, opts, with_grad, grad_alpha)
    return Terms(value, grad, norm)


def constant_reduction_factor(opts: LossOptions, num_positions: int, *, soft: bool) -> float | None:
    """The factor ``loss = factor * sum of the per-position values`` when the shapes alone fix it: 1 for
    ``"sum"``; ``1 / P`` for ``"mean"`` when every one of the ``P`` positions counts (soft targets, or no
    ``ignore_index``), 0 when ``P = 0`` (the zero-denominator rule of :func:`reduce_terms`). None when it
    depends on the data (``"weighted_mean"``, ``ignore_index``) or there is no reduction (``"none"``).
    An adapter can fold it into the class weights of a fused kernel instead of dividing afterwards."""
    if opts.reduction == "sum":
        return 1.0
    if opts.reduction == "mean" and (soft or opts.ignore_index is None):
        return 1.0 / num_positions if num_positions else 0.0
    return None


def reduce_terms(xp: Any, terms: Terms, reduction: str, denominator: Any = None) -> tuple[Any, Any]:
    """(loss, d loss / d z) for ``reduction``. ``none`` keeps per-position values and gradients.

    ``denominator`` overrides ``sum(terms.norm)`` for the means (adapters pass the sum across data-parallel
    replicas, so that every replica divides by the global count). A zero denominator gives loss 0.
    """
    value, grad, norm = terms
    if reduction == "none":
        return value, grad
    loss = xp.sum(value)
    if reduction == "sum":
        return loss, grad
    if denominator is None:
        denominator = xp.sum(norm)
    # A zero denominator gives 0 (times the numerator, so that a NaN still propagates), also where label
    # smoothing makes the numerator non-zero while every counted position weighs 0.
    positive = denominator > 0
    safe = xp.where(positive, denominator, xp.ones_like(denominator))
    loss = xp.where(positive, loss / safe, loss * 0)
    return loss, (None if grad is None else xp.where(positive, grad / safe, grad * 0))


# ----------------------------------------------------------------------------------------------------------
# Public, validated entry points
# ----------------------------------------------------------------------------------------------------------
def _device(x: Any) -> Any:
    import array_api_compat

    return array_api_compat.device(x)


def compute_dtype(xp: Any, dtype: Any) -> Any:
    """float16/bfloat16 compute in float32; float32/float64 as they are."""
    if dtype in (xp.float32, xp.float64):
        return dtype
    return xp.float32


@functools.lru_cache(maxsize=64)
def _labels_are_soft(xp: Any, logits_dtype: Any, labels_dtype: Any) -> bool:
    """The dtype checks of :func:`check_logits_and_labels`, cached per dtype pair (they run on every call)."""
    if not xp.isdtype(logits_dtype, "real floating"):
        raise TypeError(f"logits: must be floating point, got dtype {logits_dtype}")
    if xp.isdtype(labels_dtype, "bool"):
        raise TypeError("labels: must be integer class indices or floating soft targets, got bool")
    soft = xp.isdtype(labels_dtype, "real floating")
    if not soft and not xp.isdtype(labels_dtype, "integral"):
        raise TypeError(f"labels: must be integer class indices or soft targets, got dtype {labels_dtype}")
    return soft


def check_logits_and_labels(xp: Any, logits: Any, labels: Any, axis: int) -> tuple[int, bool]:
    """Shapes and dtypes; returns (the class axis as a non-negative int, whether the labels are soft)."""
    soft = _labels_are_soft(xp, logits.dtype, labels.dtype)
    if logits.ndim == 0:
        raise ValueError("logits: must have a class axis, got a 0-d array")
    if not -logits.ndim <= axis < logits.ndim:
        raise ValueError(f"axis: {axis} is out of range for logits of shape {tuple(logits.shape)}")
    axis = axis % logits.ndim
    shape = tuple(logits.shape)
    expected = shape if soft else shape[:axis] + shape[axis + 1 :]
    given = tuple(labels.shape)
    # A None (unknown, traced) size matches any size: TensorFlow traces with None batch and spatial dims.
    mismatch = given != expected and (
        len(given) != len(expected) or any(a != b and None not in (a, b) for a, b in zip(given, expected, strict=False))
    )
    if mismatch:
        kind = "soft targets must have the logits' shape" if soft else "class indices must have the logits'"
        kind += "" if soft else " shape without the class axis"
        raise ValueError(f"labels: {kind} {expected}, got {given}")
    return axis, soft


def soft_target_tolerance(xp: Any, dtype: Any) -> float:
    """How far from 1 the sum of soft targets given in ``dtype`` may be: sqrt(eps) of float32/float64, 1e-2 for
    float16/bfloat16 (a softmax in float32 sums to 1 within ~C ulps)."""
    if dtype == xp.float64:
        return float(np.sqrt(np.finfo(np.float64).eps))
    if dtype == xp.float32:
        return float(np.sqrt(np.finfo(np.float32).eps))
    return 1e-2


def check_label_values(
    xp: Any, labels: Any, num_classes: int, soft: bool, ignore_index: int | None, given_dtype: Any = None
) -> None:
    """Eager value checks (they read the data, so they are skipped under jit/tf.function). Soft targets are
    checked along the last axis; ``given_dtype``, the targets' dtype as the user gave them, sets the tolerance
    of their sum: sqrt(eps) of float32/float64, 1e-2 for float16/bfloat16."""
    if soft:
        if bool(xp.any(~(labels >= 0))):
            raise ValueError("labels: soft targets must be finite probabilities >= 0 (found negative or NaN)")
        tolerance = soft_target_tolerance(xp, labels.dtype if given_dtype is None else given_dtype)
        sums = xp.sum(labels, axis=-1)
        if bool(xp.any(~(xp.abs(sums - 1.0) <= tolerance))):
            worst = float(xp.max(xp.abs(sums - 1.0)))
            raise ValueError(
                "labels: soft targets must sum to 1 along the class axis (off by up to "
                f"{worst:.3g}); multi-label (multi-hot) targets are not supported"
            )
        return
    bad = (labels < 0) | (labels >= num_classes)
    if ignore_index is not None:
        bad = bad & (labels != ignore_index)
    if bool(xp.any(bad)):
        found = np.unique(to_numpy(labels)[to_numpy(bad)]).tolist()[:8]
        raise ValueError(f"labels: class indices must be in [0, {num_classes}), got {found}")


def prepare_weights(xp: Any, weights: Any, num_classes: int, dtype: Any, device: Any, validate: bool) -> Any:
    """The (C,) weights as an array of ``xp`` in ``dtype`` on ``device``; None stays None."""
    if weights is None:
        return None
    if isinstance(weights, np.ndarray) or not hasattr(weights, "shape"):
        # Host weights are small: always checked (validate= only spares reading device arrays).
        return xp.asarray(host_class_weights(weights, num_classes), dtype=dtype, device=device)
    if tuple(weights.shape) != (num_classes,):
        raise ValueError(f"weights: expected {num_classes} class weights, got shape {tuple(weights.shape)}")
    weights = xp.asarray(weights, device=device)
    if validate and bool(xp.any(~(xp.isfinite(weights) & (weights >= 0)))):
        raise ValueError("weights: must be finite and >= 0")
    return xp.astype(weights, dtype)


def _evaluate(logits, labels, weights, opts: LossOptions, axis: int, validate: bool, with_grad: bool):
    xp = namespace_of(logits, labels)
    axis, soft = check_logits_and_labels(xp, logits, labels, axis)
    num_classes = logits.shape[axis]
    dtype = compute_dtype(xp, logits.dtype)
    w = prepare_weights(xp, weights, num_classes, dtype, _device(logits), validate)
    last = logits.ndim - 1
    z = xp.astype(logits, dtype)
    if axis != last:
        z = xp.moveaxis(z, axis, last)
    given_dtype = labels.dtype
    if soft:
        labels = xp.astype(labels, dtype)
        if axis != last:
            labels = xp.moveaxis(labels, axis, last)
    if validate:
        check_label_values(xp, labels, num_classes, soft, opts.ignore_index, given_dtype)
    # log(0) = -inf is intended (a class with no competitor); keep NumPy from warning about it.
    with np.errstate(divide="ignore", under="ignore", over="ignore"):
        terms = loss_terms(Primitives(xp), z, labels, w, opts, soft=soft, with_grad=with_grad)
        loss, grad = reduce_terms(xp, terms, opts.reduction)
    if grad is not None:
        if axis != last:
            grad = xp.moveaxis(grad, last, axis)
        grad = xp.astype(grad, logits.dtype)
    return loss, grad


def class_balanced_loss(
    logits: Any,
    labels: Any,
    weights: Any = None,
    *,
    loss: LossName = "softmax",
    gamma: float | None = None,
    reduction: Reduction = "mean",
    axis: int = -1,
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    validate: bool = True,
) -> Any:
    """Class-balanced loss of ``logits`` (any Array-API namespace; class axis ``axis``) against ``labels``.

    ``labels``: integer class indices shaped like ``logits`` without the class axis (a scalar for an unbatched
    ``(C,)`` input), or soft targets (probabilities, ``logits``' shape) for mixup/cutmix. ``weights``: the (C,)
    class weights (for example :func:`cbloss.class_balanced_weights`), or None for unweighted.
    ``loss``: ``"softmax"``, ``"sigmoid"``, ``"focal"`` (the paper's sigmoid focal) or ``"softmax_focal"``;
    ``gamma`` (focal losses only, default 2.0). ``reduction``: ``"none"`` (per position), ``"sum"``,
    ``"mean"`` (over counted positions) or ``"weighted_mean"`` (over the counted positions' weights, like
    ``torch.nn.functional.cross_entropy(weight=...)``). ``label_smoothing`` mixes the target with the uniform
    distribution; ``ignore_index`` drops positions with that label (hard labels only). ``validate=False``
    skips the checks that read array values (for traced code). float16/bfloat16 logits are computed, and the
    loss returned, in float32. See the module docstring for the formulas.
    """
    opts = LossOptions.make(loss, gamma, reduction, label_smoothing, ignore_index)
    return _evaluate(logits, labels, weights, opts, axis, validate, with_grad=False)[0]


def class_balanced_loss_and_grad(
    logits: Any,
    labels: Any,
    weights: Any = None,
    *,
    loss: LossName = "softmax",
    gamma: float | None = None,
    reduction: Reduction = "mean",
    axis: int = -1,
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    validate: bool = True,
) -> tuple[Any, Any]:
    """``(loss, d loss / d logits)`` from the analytic gradient; same arguments as
    :func:`class_balanced_loss`. The gradient has ``logits``' shape and dtype. With ``reduction="none"`` it
    is the per-position gradient ``d loss[p] / d logits[p]`` (positions are independent, so a vector-Jacobian
    product is ``cotangent[..., None] * grad``). Targets and weights are treated as constants."""
    opts = LossOptions.make(loss, gamma, reduction, label_smoothing, ignore_index)
    return _evaluate(logits, labels, weights, opts, axis, validate, with_grad=True)
