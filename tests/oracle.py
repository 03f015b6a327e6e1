"""An independent reference for cbloss, written from docs/conventions.md alone (never from the core's code).

Everything is evaluated in mpmath at 60 significant digits on the exact values of the float64 inputs, by plain
loops over positions and classes with the textbook formulas, and rounded to float64 once at the end:

- effective number: the closed form (1 - beta^n) / (1 - beta) in high precision, and the paper's recursion
  E_1 = 1, E_n = 1 + beta * E_{n-1};
- class weights w_i = 1 / E(n_i, beta) with the three normalisations and ``zero_count="zero"``;
- per class c the unweighted loss L_c(z) a position would have with hard label c (docs/conventions.md §4), and
  its gradient dL_c/dz_j by high-precision central differences (independent of any analytic derivation);
- a position's loss sum_c a_c L_c with a_c = t_c w_c and t the (smoothed) target distribution, the four
  reductions of docs/conventions.md §7, and the vector-Jacobian product with a cotangent.

The class axis is LAST. Results are float64 NumPy arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import mpmath
import numpy as np

DPS = 60
# Central-difference step: truncation error ~ H^2 |L'''| ~ 1e-50, rounding error ~ 10^-DPS / H ~ 1e-35.
H = mpmath.mpf("1e-25")

LOSSES = ("softmax", "sigmoid", "focal", "softmax_focal")
FOCAL = ("focal", "softmax_focal")


def _mpf(x) -> mpmath.mpf:
    """The exact value of a float64 (or integer) input."""
    return mpmath.mpf(float(x)) if not isinstance(x, (int, np.integer)) else mpmath.mpf(int(x))


# --------------------------------------------------------------------------------------------------------------
# Effective number and weights (docs/conventions.md §2, §3)


def effective_number(n, beta) -> mpmath.mpf:
    """E(n, beta) = (1 - beta^n) / (1 - beta), exact (to DPS digits) for the float64 inputs n >= 0, beta in [0, 1].

    E(0, beta) = 0, E(n, 0) = 1 for n > 0, E(n, 1) = n (the limit)."""
    with mpmath.workdps(DPS):
        n, b = _mpf(n), _mpf(beta)
        if n == 0:
            return mpmath.mpf(0)
        if b == 1:
            return n
        if b == 0:
            return mpmath.mpf(1)
        return (1 - mpmath.power(b, n)) / (1 - b)


def effective_number_by_recursion(n: int, beta) -> mpmath.mpf:
    """The paper's recursion E_0 = 0, E_k = 1 + beta * E_{k-1}, step by step in high precision."""
    with mpmath.workdps(DPS):
        b, e = _mpf(beta), mpmath.mpf(0)
        for _ in range(int(n)):
            e = 1 + b * e
        return e


def effective_number_float64(n, beta) -> float:
    return float(effective_number(n, beta))


def class_weights(counts: Sequence, beta, normalize="classes", zero_count="error") -> np.ndarray:
    """w_i = 1 / E(n_i, beta), normalised per docs/conventions.md §3, rounded to float64 once.

    A zero count gets weight 0 (the oracle does not raise; ``zero_count="error"`` is the core's business)."""
    with mpmath.workdps(DPS):
        n = [_mpf(c) for c in counts]
        raw = [1 / effective_number(c, beta) if c > 0 else mpmath.mpf(0) for c in n]
        if normalize == "classes":
            present = sum(1 for c in n if c > 0)
            scale = present / sum(raw)
        elif normalize == "samples":
            scale = sum(n) / sum(c * w for c, w in zip(n, raw, strict=True))
        elif normalize is None:
            scale = mpmath.mpf(1)
        else:
            raise ValueError(normalize)
        return np.array([float(w * scale) for w in raw], dtype=np.float64)


def beta_from_volume(volume) -> float:
    with mpmath.workdps(DPS):
        v = _mpf(volume)
        return float((v - 1) / v)


# --------------------------------------------------------------------------------------------------------------
# Losses (docs/conventions.md §4, §5)


def _log_sigmoid(x):
    """log sigmoid(x) = -log(1 + exp(-x)); exact in mpmath for any magnitude."""
    return -mpmath.log1p(mpmath.exp(-x))


def _sigmoid(x):
    return 1 / (1 + mpmath.exp(-x))


def per_class_losses(z: Sequence, loss: str, gamma) -> list:
    """[L_c(z) for c in classes]: the unweighted loss of one position if its hard label were c."""
    C = len(z)
    g = _mpf(gamma)
    if loss in ("softmax", "softmax_focal"):
        lse = mpmath.log(mpmath.fsum(mpmath.exp(zi) for zi in z))
        out = []
        for c in range(C):
            nll = lse - z[c]  # -log softmax(z)_c
            if loss == "softmax":
                out.append(nll)
            else:
                one_minus_p = mpmath.fsum(mpmath.exp(z[i] - lse) for i in range(C) if i != c)
                out.append(mpmath.power(one_minus_p, g) * nll)
        return out
    # sigmoid and focal: one binary term per class, positive for the label, negative for the others
    out = []
    for c in range(C):
        total = mpmath.mpf(0)
        for i in range(C):
            x = z[i] if i == c else -z[i]  # z_i^t
            nll = -_log_sigmoid(x)  # -log p_i^t
            if loss == "sigmoid":
                total += nll
            else:
                total += mpmath.power(_sigmoid(-x), g) * nll  # (1 - p_i^t)^gamma, 0^0 = 1
        out.append(total)
    return out


@cache
def _row_terms(z_row: tuple, loss: str, gamma: float) -> tuple[list, list]:
    """(L, J): L[c] = L_c(z), J[c][j] = dL_c/dz_j by central differences, in mpmath."""
    with mpmath.workdps(DPS):
        z = [_mpf(v) for v in z_row]
        L = per_class_losses(z, loss, gamma)
        C = len(z)
        J = [[None] * C for _ in range(C)]
        for j in range(C):
            zp, zm = list(z), list(z)
            zp[j] += H
            zm[j] -= H
            Lp, Lm = per_class_losses(zp, loss, gamma), per_class_losses(zm, loss, gamma)
            for c in range(C):
                J[c][j] = (Lp[c] - Lm[c]) / (2 * H)
        return L, J


# --------------------------------------------------------------------------------------------------------------
# Targets, positions and reductions (docs/conventions.md §6, §7)


@dataclass(frozen=True)
class Result:
    """The oracle's answer, float64 with the class axis last.

    value: the reduced loss (labels' shape for reduction="none"); grad: d sum(value * cotangent) / d logits;
    position_weight: A_p = sum_c a_c, the total class weight a position carries (0 when ignored);
    dvalue: |d reduced / d value_p| * |cotangent| per position (for "none": |cotangent_p|).
    The last two size the absolute slack of cancelling terms (see tests/test_conformance.py)."""

    value: np.ndarray
    grad: np.ndarray
    position_weight: np.ndarray
    dvalue: np.ndarray


def loss_and_grad(
    logits: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    loss: str = "softmax",
    gamma: float | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    multi_label: str | None = None,
    cotangent=1.0,
) -> Result:
    """Reference loss and gradient. ``labels``: int class indices shaped like ``logits[..., 0]`` or float soft
    targets shaped like ``logits`` (multi-hot targets with ``multi_label``). ``gamma`` defaults to 2 for the focal
    losses and is 0 otherwise."""
    if loss not in LOSSES:
        raise ValueError(loss)
    gamma = (2.0 if loss in FOCAL else 0.0) if gamma is None else float(gamma)
    if multi_label is not None:
        return _multi_label(logits, labels, weights, loss, gamma, multi_label, reduction, label_smoothing, cotangent)
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    soft = labels.dtype.kind == "f"
    C = logits.shape[-1]
    batch_shape = logits.shape[:-1]
    P = int(np.prod(batch_shape, dtype=np.int64))
    z2 = logits.reshape(P, C)
    y2 = labels.reshape(P, C) if soft else labels.reshape(P)
    w = np.ones(C) if weights is None else np.asarray(weights, dtype=np.float64)
    with mpmath.workdps(DPS):
        wm = [_mpf(v) for v in w]
        eps = _mpf(label_smoothing)
        values, grads, A, counted, denom = [], [], [], [], []
        for p in range(P):
            # the target distribution t (before smoothing) and the position's share of the denominators
            if soft:
                t = [_mpf(v) for v in y2[p]]
                is_counted, d = 1, mpmath.fsum(t[c] * wm[c] for c in range(C))
            elif ignore_index is not None and int(y2[p]) == ignore_index:
                t = None
                is_counted, d = 0, mpmath.mpf(0)
            else:
                y = int(y2[p])
                assert 0 <= y < C
                t = [mpmath.mpf(1 if c == y else 0) for c in range(C)]
                is_counted, d = 1, wm[y]  # w_y, even with smoothing
            counted.append(is_counted)
            denom.append(d)
            if t is None:
                values.append(mpmath.mpf(0))
                grads.append([mpmath.mpf(0)] * C)
                A.append(mpmath.mpf(0))
                continue
            t = [(1 - eps) * tc + eps / C for tc in t]  # label smoothing
            a = [t[c] * wm[c] for c in range(C)]
            L, J = _row_terms(tuple(float(v) for v in z2[p]), loss, gamma)
            values.append(mpmath.fsum(a[c] * L[c] for c in range(C)))
            grads.append([mpmath.fsum(a[c] * J[c][j] for c in range(C)) for j in range(C)])
            A.append(mpmath.fsum(a))

        return _reduced(values, grads, A, counted, denom, reduction, cotangent, logits.shape)


def _reduced(values, grads, position_weight, counted, denom, reduction, cotangent, shape) -> Result:
    """The reduction of per-position values and gradients (docs/conventions.md §7) and its vector-Jacobian
    product with ``cotangent``: ``counted`` (1/0) and ``denom`` (the weights) are each position's denominators."""
    batch_shape, P = shape[:-1], len(values)
    cot = np.asarray(cotangent, dtype=np.float64)
    if reduction == "none":
        cots = [_mpf(v) for v in np.broadcast_to(cot, batch_shape).reshape(P)]
        value = np.array([float(v) for v in values]).reshape(batch_shape)
        grad = [[cots[p] * g for g in grads[p]] for p in range(P)]
        dvalue = [abs(c) for c in cots]
    else:
        if reduction == "sum":
            r = mpmath.mpf(1)
        elif reduction == "mean":
            n = sum(counted)
            r = mpmath.mpf(0) if n == 0 else 1 / mpmath.mpf(n)
        elif reduction == "weighted_mean":
            D = mpmath.fsum(denom)
            r = mpmath.mpf(0) if D == 0 else 1 / D
        else:
            raise ValueError(reduction)
        c0 = _mpf(cot.reshape(()))
        value = np.array(float(r * mpmath.fsum(values)))
        grad = [[c0 * r * g for g in grads[p]] for p in range(P)]
        dvalue = [abs(c0 * r)] * P
    return Result(
        value=value,
        grad=np.array([[float(g) for g in row] for row in grad], dtype=np.float64).reshape(shape),
        position_weight=np.array([float(a) for a in position_weight]).reshape(batch_shape),
        dvalue=np.array([float(d) for d in dvalue]).reshape(batch_shape),
    )


# --------------------------------------------------------------------------------------------------------------
# Multi-label targets (docs/conventions.md §6.5)


def _binary_element(z, t, gamma):
    """t * l(z) + (1 - t) * l(-z), l(x) = (1 - sigmoid(x))^gamma * (-log sigmoid(x)): the expected binary loss
    of one class under the target probability t."""
    g = _mpf(gamma)

    def binary_loss(x):
        return mpmath.power(_sigmoid(-x), g) * -_log_sigmoid(x)

    return t * binary_loss(z) + (1 - t) * binary_loss(-z)


def _multi_label(logits, targets, weights, loss, gamma, mode, reduction, label_smoothing, cotangent) -> Result:
    """Per position: ``"class"``: sum_c w_c e_c; ``"sample"``: omega * sum_c e_c with omega the mean class weight
    of the position's positives (sum_c t_c w_c / sum_c t_c, 1 without positives; un-smoothed t); e_c the binary
    element of class c under the smoothed target t (1 - eps) + eps / 2. Gradients by central differences."""
    if loss not in ("sigmoid", "focal") or mode not in ("class", "sample"):
        raise ValueError((loss, mode))
    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    C = logits.shape[-1]
    batch_shape = logits.shape[:-1]
    P = int(np.prod(batch_shape, dtype=np.int64))
    z2, t2 = logits.reshape(P, C), targets.reshape(P, C)
    w = np.ones(C) if weights is None else np.asarray(weights, dtype=np.float64)
    with mpmath.workdps(DPS):
        wm = [_mpf(v) for v in w]
        eps = _mpf(label_smoothing)
        values, grads, scales = [], [], []
        for p in range(P):
            t = [_mpf(v) for v in t2[p]]
            positives = mpmath.fsum(t)
            if mode == "class":
                coef = wm
                scales.append(max(wm))
            else:
                omega = mpmath.fsum(t[c] * wm[c] for c in range(C)) / positives if positives else mpmath.mpf(1)
                coef = [omega] * C
                scales.append(omega)
            ts = [(1 - eps) * tc + eps / 2 for tc in t]
            z = [_mpf(v) for v in z2[p]]
            values.append(mpmath.fsum(coef[c] * _binary_element(z[c], ts[c], gamma) for c in range(C)))
            grads.append(
                [
                    coef[c]
                    * (_binary_element(z[c] + H, ts[c], gamma) - _binary_element(z[c] - H, ts[c], gamma))
                    / (2 * H)
                    for c in range(C)
                ]
            )
        if reduction == "weighted_mean" and mode != "sample":
            raise ValueError(reduction)
        # every position counts; "sample" positions weigh omega in the weighted mean
        return _reduced(values, grads, scales, [1] * P, scales, reduction, cotangent, logits.shape)
