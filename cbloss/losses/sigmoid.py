r"""The class-balanced sigmoid loss and the paper's sigmoid focal loss (docs/conventions.md §4).

Each class is a binary problem. With the logit signed towards the position's target, ``x_i = z_i`` for the
label's class and ``x_i = -z_i`` for the others, the loss with hard label ``c`` is

    L_c = sum_i l(x_i),    l(x) = (1 - sigmoid(x))**gamma * (-log sigmoid(x))    (gamma = 0: the sigmoid loss).

Everything is evaluated at ``y = -x`` in log space, so that values and gradients are finite for every finite
logit and every gamma >= 0 (a ``(1 - p)**gamma`` form has an infinite slope at gamma < 1). With
``u = softplus(y) = -log sigmoid(x)``, ``q = sigmoid(y) = 1 - sigmoid(x)`` and ``r = sigmoid(-y) = sigmoid(x)``:

    l = q**gamma * u,      dl/dy = q**gamma * (gamma * r * u + q)        (sigmoid: l = u, dl/dy = q).

With ``neg_j = l(-z_j)`` (the element of a class that is not the target) and ``pos_j = l(z_j)`` (of the target),
a position with target coefficients ``a`` (``A = sum_c a_c``) has

    loss = sum_j (A - a_j) neg_j + sum_c a_c pos_c,
    grad_j = A * dneg_j/dz_j + a_j * (dpos_j/dz_j - dneg_j/dz_j),

where ``dneg_j/dz_j = dl/dy at y = z_j`` and ``dpos_j/dz_j = -dl/dy at y = -z_j``. For a class index the label's
column is evaluated on its own, so that every entry keeps its relative digits.

Multi-hot targets (docs/conventions.md §6.5) give each class its own binary target ``t_c`` in [0, 1]: the element
is linear in it, ``e_c = t_c pos_c + (1 - t_c) neg_c`` (the expected loss under ``t_c``; for 0/1 targets exactly
the binary focal loss ``(1 - p_t)**gamma * BCE``), and a position's loss is ``s * sum_c v_c e_c`` with per-class
weights ``v`` and a per-position weight ``s``.

Example:
    >>> import numpy as np, cbloss
    >>> z = np.array([[2.0, 0.0, -1.0]]); y = np.array([0])
    >>> float(cbloss.class_balanced_loss(z, y, loss="focal", gamma=2.0, reduction="sum"))  # doctest: +ELLIPSIS
    0.1977...
"""

from __future__ import annotations

import functools
from typing import Any

from ..primitives import Primitives
from ..targets import Coefficients
from ._common import power, power_


def element(ops: Primitives, y: Any, gamma: float, with_grad: bool, negated: bool = False) -> tuple[Any, Any]:
    """``(l, dl/dy)`` at ``y = -x`` elementwise (``dl/dy`` None without ``with_grad``), both new arrays; with
    ``negated``, at ``-y`` (:meth:`Primitives.softplus_and_sigmoids_of_negation`: the other side of the same
    logits)."""
    if gamma == 0.0:
        y = -y if negated else y
        if not with_grad:
            return ops.softplus(y), None
        return ops.softplus_and_sigmoid(y)
    u, q, r = ops.softplus_and_sigmoids_of_negation(y) if negated else ops.softplus_and_sigmoids(y)
    # u, q and r are our own temporaries: updated in place (rebound where arrays are immutable), so that no more
    # than these three (P..., C) arrays are ever alive.
    if not with_grad:
        u *= power(ops.xp, q, gamma)
        return u, None
    # dl/dy = q**gamma * (gamma * r * u + q): the bracket first, while u is still -log sigmoid(x)
    r *= u
    if gamma != 1.0:
        r *= gamma
    r += q
    q = power_(q, gamma)  # the modulation q**gamma
    u *= q
    r *= q
    return u, r


def hard(ops: Primitives, z: Any, labels: Any, coef: Any, gamma: float, with_grad: bool) -> tuple[Any, Any]:
    """``coef * L_y`` and its gradient, for class indices ``labels`` (P...) and coefficients ``coef`` (P...)."""
    neg, neg_slope = element(ops, z, gamma, with_grad)
    pos, pos_slope = element(ops, -ops.take_label(z, labels), gamma, with_grad)
    # neg and neg_slope are our own temporaries: the label's column is written into them, not into copies.
    value = coef * ops.class_sum_with_label_(neg, labels, pos)
    if not with_grad:
        return value, None
    # Scaled once the label's column is in: the elementwise passes before that write depend on z alone, so that a
    # compiler fuses them into one loop (a product with the positions' coefficients, broadcast along the class
    # axis, is a loop of another shape) and may defer the scaling to the backward pass.
    grad = ops.put_at_label_(neg_slope, labels, -pos_slope)
    grad *= coef[..., None]
    return value, grad


def dense(ops: Primitives, z: Any, a: Coefficients, gamma: float, with_grad: bool) -> tuple[Any, Any]:
    """``sum_c a_c L_c`` and its gradient for target coefficients ``a``.

    The two sides are evaluated one after the other and reduced as soon as they are formed, so that at most the
    gradient of one side is kept while the other is evaluated. At gamma = 0, ``pos_j = neg_j - z_j`` (the
    softplus identity) and ``dneg_j/dz_j - dpos_j/dz_j = sigmoid(z_j) + sigmoid(-z_j) = 1`` reduce this to

        loss = A * sum_j softplus(z_j) - sum_c a_c z_c,      grad_j = A * sigmoid(z_j) - a_j.
    """
    xp = ops.xp
    total = a.total(ops, z.shape[-1])
    if gamma == 0.0:
        if not with_grad:
            return total * xp.sum(ops.softplus(z), axis=-1) - a.dot(ops, z), None
        softplus, sigmoid = ops.softplus_and_sigmoid(z)
        value = total * xp.sum(softplus, axis=-1) - a.dot(ops, z)
        del softplus
        sigmoid *= total[..., None]  # our own temporary becomes the gradient
        return value, a.subtract_from_(ops, sigmoid)
    neg, neg_slope = element(ops, z, gamma, with_grad)
    value = total * xp.sum(neg, axis=-1) - a.dot(ops, neg)  # sum_j (A - a_j) neg_j
    del neg
    pos, pos_slope = element(ops, z, gamma, with_grad, negated=True)
    value = value + a.dot(ops, pos)
    if not with_grad:
        return value, None
    del pos
    # A * dneg/dz - a * (dneg/dz - dpos/dz), in place of our own temporaries
    pos_slope += neg_slope
    neg_slope *= total[..., None]
    return value, a.subtract_from_(ops, neg_slope, pos_slope)


def multi_hot(
    ops: Primitives,
    z: Any,
    targets: Any,
    class_weights: Any | None,
    position_weights: Any | None,
    gamma: float,
    with_grad: bool,
    total: bool = False,
) -> tuple[Any, Any]:
    """``s * sum_c v_c e_c`` and its gradient for multi-hot ``targets`` (P..., C), per-class weights
    ``class_weights`` (C,) and per-position weights ``position_weights`` (P...), each None for all ones. The sides
    are weighed as ``(1 - t) neg + t pos`` by :meth:`Primitives.lerp`, exact at 0/1 targets, so that these keep
    every digit. With ``total`` (a reduced loss, no position weights) the value is the 0-d sum over the positions
    (:meth:`Primitives.class_total`)."""
    if gamma == 0.0:
        elements, grad = _binary_cross_entropy(ops, z, targets, with_grad)
        value = (ops.class_total if total else ops.class_sum)(elements, class_weights)
        del elements
    else:
        focal = functools.partial(
            _focal, ops, class_weights=class_weights, gamma=gamma, with_grad=with_grad, total=total
        )
        value, grad = ops.in_position_blocks(focal, z, targets, total)
    if position_weights is not None:
        value = value * position_weights
    if not with_grad:
        return value, None
    # grad is our own temporary: scaled in place (rebound where arrays are immutable)
    if class_weights is not None:
        grad *= class_weights
    if position_weights is not None:
        grad *= position_weights[..., None]
    return value, grad


def _focal(
    ops: Primitives, z: Any, targets: Any, class_weights: Any | None, gamma: float, with_grad: bool, total: bool
) -> tuple[Any, Any]:
    """``sum_c v_c e_c`` (its sum over the positions with ``total``) for the element ``e = (1 - t) neg + t pos``
    and ``de/dz`` for gamma > 0, both sides from the four pieces they share
    (:meth:`Primitives.softplus_pair_and_sigmoids`): with ``q = sigmoid(z)``, ``r = sigmoid(-z)``,

        neg = q**gamma softplus(z),       dneg/dz = gamma r neg + q**(gamma + 1),
        pos = r**gamma softplus(-z),      dpos/dz = -(gamma q pos + r**(gamma + 1)),

    (:func:`element`'s ``q**gamma (gamma r u + q)`` at ``y = z`` and ``y = -z``), each term >= 0. The target
    weighs the two sides with :meth:`Primitives.lerp`, exact at 0/1 targets, so a tiny element or gradient keeps
    its digits."""
    xp = ops.xp
    neg, pos, q, r = ops.softplus_pair_and_sigmoids(z)
    # Our own temporaries, updated in place (rebound where arrays are immutable): no more than these four are
    # ever alive besides the elements (for a block of positions where a backend evaluates it in blocks,
    # Primitives.in_position_blocks).
    if gamma == 2.0:
        neg *= q
        neg *= q
        pos *= r
        pos *= r
    else:
        neg *= power(xp, q, gamma)
        pos *= power(xp, r, gamma)
    value = (ops.class_total if total else ops.class_sum)(ops.lerp(neg, pos, targets), class_weights)
    if not with_grad:
        return value, None
    neg *= r
    pos *= q
    q **= gamma + 1.0
    r **= gamma + 1.0
    if gamma != 1.0:
        neg *= gamma
    neg += q  # dneg/dz
    pos *= -gamma
    pos -= r  # dpos/dz
    return value, ops.lerp_(neg, pos, targets)


def _binary_cross_entropy(ops: Primitives, z: Any, targets: Any, with_grad: bool) -> tuple[Any, Any]:
    """The sigmoid element ``e = (1 - t) softplus(z) + t softplus(-z)`` and ``de/dz = sigmoid(z) - t`` from one
    transcendental pass (:meth:`Primitives.sign_split_sigmoid`): with the step ``h`` of ``z``'s sign,

        e = log1p(exp(-|z|)) + (h - t) z,      de/dz = (h - t) + (sigmoid(z) - h).

    ``h - t`` is ``1 - t`` where ``z > 0`` and ``-t`` elsewhere, so both terms of ``e`` are >= 0 (no cancellation),
    and a 0/1 target makes it exactly 0 or +-1, so that a tiny gradient keeps its digits."""
    step, rest, signed = ops.sign_split_sigmoid(z)
    # our own temporaries, updated in place (rebound where arrays are immutable)
    step -= targets
    rest += step * z
    if not with_grad:
        return rest, None
    signed += step
    return rest, signed
