"""Every backend against the independent oracle (tests/oracle.py): values and gradients of the four losses, the
four reductions, every label form, with and without weights, batched, spatial and unbatched inputs.

Inputs are exactly representable in float32 and float16 (logits rounded to float16, weights to float32, soft
targets multiples of 1/64), so that float64, float32 and low-precision runs see the same exact inputs and the
oracle, which evaluates them in 60-digit arithmetic, is the reference for all of them.

Tolerances (docs/conventions.md §15): float64 within 1e-12 relative, float32 within 1e-5 relative, each plus an
absolute slack for cancellation. A position's gradient A_p * p - a (softmax) or its sigmoid analogue, and a value
such as lse(z) - z_y, are differences of terms of size up to A_p * max(1, max|z|) per class (A_p = sum_c t_c w_c,
the weight the position carries, at most max(w)); rounding each term costs an ulp of that size, so the exact
result can be tiny while the computed one is off by a few ulps of the terms. The slack is therefore
    unit * max(1, max|z|) * C * A_p * |d reduced / d value_p|
per position (for the gradient; for a reduced value summed over positions), with unit = 1e-15 for float64 and
the analogous 1e-15 * 2**29 (the ratio of the float32 and float64 epsilons) for float32. It is the per-position
bound 1e-15 * max(1, max|z|) * max(w) * C, sharpened by A_p <= max(w) and scaled down by the reduction's factor
(1/N for "mean", 1/sum w for "weighted_mean") so that it stays as tight for reduced results as for per-position
ones.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest

from tests import oracle

LOSSES = [
    ("softmax", None),
    ("sigmoid", None),
    ("focal", 0.5),
    ("focal", 2.0),
    ("softmax_focal", 0.5),
    ("softmax_focal", 2.0),
]
REDUCTIONS = ["none", "sum", "mean", "weighted_mean"]
MULTI_LABEL_LOSSES = [("sigmoid", None), ("focal", 0.0), ("focal", 0.5), ("focal", 2.0)]
MULTI_LABELS = [
    "multi_class",
    "multi_sample",
    "multi_class_smooth",
    "multi_sample_smooth",
    "multi_class_fractional",
    "multi_sample_fractional",
]
LABELS = ["hard", "hard_ignore", "hard_smooth", "hard_ignore_smooth", "soft", "soft_smooth"]
SHAPES = {"P7": (7,), "N2xd3": (2, 3), "unbatched": ()}
CLASSES = [2, 5]
SMOOTHING = 0.1
IGNORE = -100

UNIT = {"float64": 1e-15, "float32": 1e-15 * 2.0**29}
RTOL = {"float64": 1e-12, "float32": 1e-5}


@dataclass(frozen=True)
class Case:
    loss: str
    gamma: float | None
    reduction: str
    labels: str
    weights: str  # "w": given, "now": None, "w0": class 0 weighs 0 and every label is 0
    shape: str
    C: int

    @property
    def id(self) -> str:
        loss = self.loss if self.gamma is None else f"{self.loss}{self.gamma:g}"
        return f"{loss}-{self.reduction}-{self.labels}-{self.weights}-{self.shape}-C{self.C}"

    def options(self) -> dict:
        opts = {"loss": self.loss, "reduction": self.reduction}
        if self.gamma is not None:
            opts["gamma"] = self.gamma
        if "smooth" in self.labels:
            opts["label_smoothing"] = SMOOTHING
        if "ignore" in self.labels:
            opts["ignore_index"] = IGNORE
        if self.labels.startswith("multi"):
            opts["multi_label"] = self.labels.split("_")[1]
        return opts


CASES = (
    [
        Case(loss, gamma, reduction, labels, weights, shape, C)
        for loss, gamma in LOSSES
        for reduction in REDUCTIONS
        for labels in LABELS
        for weights in ("w", "now")
        for shape in SHAPES
        for C in CLASSES
    ]
    + [
        # zero denominators: weighted_mean is 0 (with its gradient), even where smoothing makes the numerator > 0
        Case(loss, gamma, reduction, labels, "w0", "P7", C)
        for loss, gamma in LOSSES
        for reduction in ("weighted_mean", "mean")
        for labels in LABELS
        for C in CLASSES
    ]
    + [
        # other focusing exponents: gamma = 1 (q**0 = 1), a fractional gamma - 1, and a larger gamma take the focal
        # slope's other branches; P7 holds the saturated position where q is 0 or tiny
        Case(loss, gamma, "none", labels, "w", "P7", 5)
        for loss in ("focal", "softmax_focal")
        for gamma in (1.0, 1.5, 3.0)
        for labels in ("hard", "soft_smooth")
    ]
    + [
        # multi-hot targets (docs/conventions.md §6.5): 0/1 and fractional, both weightings, with smoothing
        Case(loss, gamma, reduction, labels, weights, shape, C)
        for loss, gamma in MULTI_LABEL_LOSSES
        for labels in MULTI_LABELS
        for reduction in REDUCTIONS
        if not (labels.startswith("multi_class") and reduction == "weighted_mean")
        for weights in ("w", "now")
        for shape in ("P7", "N2xd3")  # the saturated positions and a spatial class axis; C = 5 keeps CI short
        for C in (5,)
    ]
)


def _rng(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


@cache
def inputs(case: Case) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """(logits, labels, weights, cotangent), float64 NumPy with the class axis last, exact in float16/32."""
    batch = SHAPES[case.shape]
    rng = _rng("logits", case.shape, case.C)
    logits = rng.normal(0.0, 3.0, (*batch, case.C))
    if case.shape == "P7":
        logits[0] *= 6.0  # a saturated position: tiny probabilities and gradients, p_y close to 1 or 0
        logits[1] = 0.0  # a tie
    logits = logits.astype(np.float16).astype(np.float64)

    rng = _rng("labels", case.labels, case.shape, case.C)
    if case.labels.startswith("multi"):
        if case.labels.endswith("fractional"):
            labels = rng.integers(0, 65, (*batch, case.C)) / 64.0  # exact in float16
        else:
            labels = (rng.uniform(size=(*batch, case.C)) < 0.4).astype(np.float64)
            if case.shape == "P7":
                labels[2] = 0.0  # a position with no positive
                labels[0] = 1.0  # every class positive at the saturated position
    elif case.labels.startswith("soft"):
        # multiples of 1/64 summing to exactly 1, some classes zero
        probs = rng.dirichlet(np.full(case.C, 0.7), size=batch)
        counts = np.apply_along_axis(lambda q: np.bincount(rng.choice(case.C, 64, p=q), minlength=case.C), -1, probs)
        labels = counts.astype(np.float64) / 64.0
    else:
        labels = rng.integers(0, case.C, batch, dtype=np.int64)
        if "ignore" in case.labels:
            flat = labels.reshape(-1)  # a view: every third position ignored; the unbatched one is all ignored
            flat[::3] = IGNORE
    weights = rng.uniform(0.25, 3.0, case.C).astype(np.float32).astype(np.float64)
    if case.weights == "w0":
        weights[0] = 0.0
        labels = np.where(labels == IGNORE, IGNORE, 0) if labels.dtype.kind == "i" else np.eye(case.C)[0] + 0 * labels
    elif case.weights == "now":
        weights = None
    cotangent = rng.uniform(0.5, 1.5, batch) if case.reduction == "none" else np.array(rng.uniform(0.5, 1.5))
    return logits, labels, weights, cotangent


@cache
def expected(case: Case) -> oracle.Result:
    logits, labels, weights, cotangent = inputs(case)
    return oracle.loss_and_grad(logits, labels, weights, cotangent=cotangent, **case.options())


def assert_close(name, got, want, rtol, atol, case, dtype):
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == want.shape, f"{name}: shape {got.shape}, expected {want.shape}"
    err = np.abs(got - want)
    bound = rtol * np.abs(want) + atol
    bad = ~(err <= bound)  # NaN fails
    if bad.any():
        i = np.argwhere(bad)[0] if bad.ndim else ()
        i = tuple(i)
        limit = np.broadcast_to(bound, bad.shape)[i]
        raise AssertionError(
            f"{case.id} [{dtype}] {name}: {int(bad.sum())} of {bad.size} entries off; first at {i}: "
            f"got {got[i]!r}, expected {want[i]!r}, |diff| {err[i]:.3g} > bound {limit:.3g}"
        )


def check_against_oracle(got_value, got_grad, case, dtype, rtol=None, unit=None):
    want = expected(case)
    logits = inputs(case)[0]
    C = logits.shape[-1]
    base = (UNIT[dtype] if unit is None else unit) * max(1.0, float(np.max(np.abs(logits)))) * C
    rtol = RTOL[dtype] if rtol is None else rtol
    per_position = base * want.position_weight * want.dvalue  # the slack of one position's gradient
    if case.reduction == "none":
        value_atol = base * want.position_weight
    else:
        value_atol = np.sum(per_position)
    assert_close("value", got_value, want.value, rtol, value_atol, case, dtype)
    assert_close("grad", got_grad, want.grad, rtol, per_position[..., None], case, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matches_oracle(backend, case, dtype):
    if dtype not in backend.dtypes:
        pytest.skip(f"{backend.name} does not support {dtype}")
    logits, labels, weights, cotangent = inputs(case)
    value, grad = backend.loss_and_grad(
        logits, labels, weights, dtype=dtype, cotangent=cotangent, options=case.options()
    )
    check_against_oracle(value, grad, case, dtype)


# Low precision: float16/bfloat16 logits are computed in float32 (docs/conventions.md §9), so the reference is the
# backend's own float32 result on the same inputs rounded to that dtype (the logits already are exact float16;
# soft targets are multiples of 1/64, exact in both). The loss comes back in float32: within a few float32 ulps.
# The gradient comes back in the logits' dtype: within one rounding of it (2^-10 relative for float16's 11-bit
# significand with double rounding allowed, bfloat16's 8-bit one 2^-7), plus its smallest subnormal.
LOW = {"float16": (2.0**-10, 2.0**-24), "bfloat16": (2.0**-7, 2.0**-133)}
LOW_CASES = [c for c in CASES if c.C == 5 and c.weights == "w" and c.reduction in ("none", "mean")]


def round_to(x: np.ndarray, dtype: str) -> np.ndarray:
    """x rounded (to nearest even) to float16 or bfloat16, as float64."""
    if dtype == "float16":
        return x.astype(np.float16).astype(np.float64)
    assert dtype == "bfloat16", dtype
    bits = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.astype(np.uint32).view(np.float32).astype(np.float64)


@pytest.mark.parametrize("case", LOW_CASES, ids=lambda c: c.id)
def test_low_precision_matches_float32(low_precision_backend, case):
    backend = low_precision_backend
    logits, labels, weights, cotangent = inputs(case)
    options = case.options()
    for dtype in backend.low_precision:
        rounded = round_to(logits, dtype)
        ref_value, ref_grad = backend.loss_and_grad(
            rounded, labels, weights, dtype="float32", cotangent=cotangent, options=options
        )
        if np.array_equal(rounded, logits):  # the float32 reference itself agrees with the oracle
            check_against_oracle(ref_value, ref_grad, case, "float32")
        value, grad = backend.loss_and_grad(logits, labels, weights, dtype=dtype, cotangent=cotangent, options=options)
        assert_close("value", value, ref_value, 4 * 2.0**-24, 1e-30, case, dtype)
        grad_rtol, grad_atol = LOW[dtype]
        assert_close("grad", grad, ref_grad, grad_rtol, grad_atol * np.max(np.abs(cotangent)), case, dtype)


@pytest.mark.parametrize("loss, gamma", [("sigmoid", None), ("focal", 2.0), ("softmax_focal", 2.0)])
def test_confident_positions_keep_relative_digits(backend, loss, gamma):
    """Confident, correct positions: every loss and gradient entry is tiny, and these losses compute each one
    without cancellation: float32 within 1e-5 relative, with no absolute slack. For the softmax focal loss the
    label's logit leads by 8.5 to 15 (p_y within ~1e-3 of 1) and its gradient k * (p_y - 1) is taken as
    -k * sum_{i != y} p_i; for the sigmoid losses every logit is at least 8.5 away from 0 on its target's side."""
    if loss == "softmax_focal":
        logits = np.array([[9.0, -1.0, 0.5], [0.0, 12.0, -3.0], [2.0, -2.0, 10.5]])
    else:
        logits = np.array([[9.0, -10.0, -8.5], [-12.0, 12.0, -9.0], [-9.5, -11.0, 10.5]])
    labels = np.array([0, 1, 2])
    options = dict(loss=loss, gamma=gamma, reduction="none")
    dtype = "float32" if "float32" in backend.dtypes else "float64"
    cotangent = np.ones(3)
    value, grad = backend.loss_and_grad(logits, labels, None, dtype=dtype, cotangent=cotangent, options=options)
    want = oracle.loss_and_grad(logits, labels, None, cotangent=cotangent, **options)
    assert np.max(want.value) < 1e-3  # the regime this test is about
    case = Case(loss, gamma, "none", "hard", "now", "P3", 3)  # names the case in a failure message
    assert_close("value", value, want.value, RTOL[dtype], 0.0, case, dtype)
    assert_close("grad", grad, want.grad, RTOL[dtype], 0.0, case, dtype)
