r"""The class-balanced softmax focal loss (docs/conventions.md §4).

With ``p = softmax(z)``, the loss with hard label ``c`` is ``L_c = (1 - p_c)**gamma * (-log p_c)``. It is
evaluated through the margin ``x_c = z_c - log sum_{i != c} exp(z_i)``, for which ``p_c = sigmoid(x_c)``
exactly: at ``y = -x_c``, ``u = softplus(y) = -log p_c``, ``q = sigmoid(y) = 1 - p_c`` and
``r = sigmoid(-y) = p_c``, each with its relative digits, and

    L_c = q**gamma * u,     dL_c/dz_j = k_c * (p_j - [j == c]),
    k_c = q**gamma * (1 + gamma * r * u / q)          (u / q -> 1 as q -> 0).

A position with target coefficients ``a`` has ``loss = sum_c a_c L_c`` and ``grad = p * sum_c a_c k_c - a * k``.
At gamma = 0 it is the softmax loss, which the engine then evaluates instead.

Example:
    >>> import numpy as np, cbloss
    >>> z = np.array([[2.0, 0.0, -1.0]]); y = np.array([0])
    >>> float(cbloss.class_balanced_loss(z, y, loss="softmax_focal", reduction="sum"))  # doctest: +ELLIPSIS
    0.0041...
"""

from __future__ import annotations

from typing import Any

from ..primitives import Primitives
from ..targets import Coefficients
from ._common import power, power_


def hard(ops: Primitives, z: Any, labels: Any, coef: Any, gamma: float, with_grad: bool) -> tuple[Any, Any]:
    """``coef * L_y`` and its gradient, for class indices ``labels`` (P...) and coefficients ``coef`` (P...)."""
    xp = ops.xp
    p, lse = ops.softmax_and_logsumexp(z)
    # The other classes' probabilities, summed directly: rest = 1 - p_y without the cancellation near p_y = 1.
    # p is our own temporary: the label's column is zeroed in it, and it becomes the gradient below.
    others = ops.put_at_label_(p, labels, xp.zeros_like(lse))
    rest = xp.sum(others, axis=-1)
    y = xp.log(rest) - (ops.take_label(z, labels) - lse)
    if not with_grad:
        u, q, _ = ops.softplus_and_sigmoids(y)
        return coef * (power(xp, q, gamma) * u), None
    value, slope = _value_and_slope_(xp, *ops.softplus_and_sigmoids_(y), gamma)
    slope = coef * slope
    # k * (p_j - [j == y]): k * p_j off the label, and -k * rest at it (exact where p_y is close to 1).
    others *= slope[..., None]
    return coef * value, ops.put_at_label_(others, labels, -slope * rest)


def dense(ops: Primitives, z: Any, a: Coefficients, gamma: float, with_grad: bool) -> tuple[Any, Any]:
    """``sum_c a_c L_c`` and its gradient for target coefficients ``a``. Every (P..., C) array below is our own
    temporary, updated in place (rebound where arrays are immutable): at most four are alive at once."""
    xp = ops.xp
    top = xp.argmax(z, axis=-1)
    # the logit at top, not a max: a derivative of these formulas (JAX's second order) then moves the shift with
    # that logit alone, as the top entry set to exp(0) below assumes; a max's derivative is split between ties
    top_logit = ops.take_label(z, top)[..., None]
    shifted = z - top_logit
    e = xp.exp(shifted)
    # log sum_{i != c} exp(z_i - max) for every c: for c below the top class T - e_c >= e_top = 1 >= e_c is well
    # conditioned; for the top class the others are summed directly, with its own term (exp(0) = 1) set aside.
    column = xp.zeros_like(z[..., 0])
    e = ops.put_at_label_(e, top, column)
    rest_top = xp.sum(e, axis=-1)
    e = ops.put_at_label_(e, top, column + 1.0)
    everything = xp.sum(e, axis=-1, keepdims=True)
    y = ops.put_at_label_(everything - e, top, rest_top)
    y = xp.log(y)
    y -= shifted
    del shifted
    if not with_grad:
        u, q, _ = ops.softplus_and_sigmoids_(y)
        u *= power(xp, q, gamma)
        return a.dot(ops, u), None
    elements, slope = _value_and_slope_(xp, *ops.softplus_and_sigmoids_(y), gamma)
    value = a.dot(ops, elements)
    del elements
    # e is read once more, after the passes above: a compiler backend forms it again here rather than hold it
    e = ops.rematerialize_exp_(e, z, top_logit, top)
    e /= everything  # p, which becomes the gradient
    e *= a.dot(ops, slope)[..., None]
    return value, a.subtract_from_(ops, e, slope)


def _value_and_slope_(xp: Any, u: Any, q: Any, r: Any, gamma: float) -> tuple[Any, Any]:
    """``(q**gamma * u, k)`` with the slope ``k = q**gamma * (1 + gamma * r * u / q)``: for gamma >= 1 as
    ``q**gamma + gamma * r * u * q**(gamma - 1)`` (no division); below 1 ``q**(gamma - 1)`` is infinite at ``q = 0``,
    where ``u / q`` is taken as its limit 1. Computed in place of ``u``, ``q`` and ``r``,
    temporaries that the caller hands over and reads no more (rebound where arrays are immutable)."""
    if gamma < 1.0:
        positive = q > 0
        ratio = xp.where(positive, u / xp.where(positive, q, xp.ones_like(q)), xp.ones_like(q))
        modulation = power(xp, q, gamma)
        r *= ratio
        del ratio
        r *= gamma
        r += 1.0
        r *= modulation
        u *= modulation
        return u, r
    # q**gamma + gamma * r * u * q**(gamma - 1)
    r *= u
    if gamma != 1.0:
        r *= gamma
        r *= q if gamma == 2.0 else power(xp, q, gamma - 1.0)
    q = power_(q, gamma)  # the modulation q**gamma
    r += q
    u *= q
    return u, r
