"""The effective number of samples (Cui et al., CVPR 2019, section 3).

Each sample covers a unit volume of a feature space of total volume ``N``; a new sample overlaps the already
covered volume ``E_{n-1}`` with probability ``E_{n-1} / N``. The expected covered volume after ``n`` samples is

    E_1 = 1,   E_n = 1 + beta * E_{n-1},   beta = (N - 1) / N,

whose closed form is ``E_n = (1 - beta**n) / (1 - beta) = sum_{j<n} beta**j``.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from ._namespace import check_unmasked, is_array, namespace_of, to_numpy
from .validation import check_beta, check_real, real_on_host

__all__ = ["beta_from_volume", "effective_number", "effective_number_recursive"]


def _as_float64(x: Any, name: str) -> tuple[Any, Any]:
    """(xp, x as a float64 array of xp); Python scalars and lists become NumPy."""
    check_unmasked(x, name)
    xp = namespace_of(x) if is_array(x) else namespace_of()
    if not is_array(x):
        x = real_on_host(name, x)
    elif not (xp.isdtype(x.dtype, "real floating") or xp.isdtype(x.dtype, "integral")):
        raise TypeError(f"{name}: must be real numbers, got dtype {x.dtype}")
    x = xp.astype(x, xp.float64)
    if x.dtype != xp.float64:  # JAX without jax_enable_x64 makes float32 of it
        raise TypeError(f"{name}: its namespace gives float32 for float64 (JAX needs jax_enable_x64); pass NumPy")
    return xp, x


def _check_counts(xp: Any, n: Any, name: str) -> None:
    bad = ~(xp.isfinite(n) & (n >= 0))
    if bool(xp.any(bad)):
        values = to_numpy(n)[to_numpy(bad)]
        raise ValueError(f"{name}: counts must be finite and >= 0, got {values.tolist()[:8]}")


def effective_number(n: Any, beta: float) -> Any:
    """Closed-form effective number ``E(n, beta) = (1 - beta**n) / (1 - beta)`` in float64.

    Conventions: ``E(0, beta) = 0``; ``E(n, 0) = 1`` for ``n >= 1``; ``E(n, 1) = n`` exactly (the limit,
    inverse-frequency weighting). ``n`` may be any non-negative real (array of any supported namespace, a
    list or a scalar); the result is a float64 array of ``n``'s namespace (NumPy for lists and scalars).

    Stability: ``1 - beta**n`` is evaluated as ``-expm1(n * log(beta))`` with ``log(beta) = log1p(-(1 - beta))``
    for ``beta >= 1/2``, where ``1 - beta`` is exact (Sterbenz); the naive formula loses up to half the digits
    near ``beta = 1`` for whole counts, and all of them for fractional ones. NumPy inputs are evaluated in
    ``np.longdouble`` where it is wider than float64 (x86-64 and aarch64 Linux) and rounded once: within 1 ulp
    of the exact value of the float64 inputs for every beta in [0, 1] and n up to 1e12. Other namespaces (and
    NumPy where long double is float64) evaluate in float64, within 2.5 ulps (four roundings).

    Example:
        >>> import cbloss
        >>> cbloss.effective_number([1, 10, 1000], beta=0.99).round(6).tolist()  # at most 1 / (1 - beta) = 100
        [1.0, 9.561792, 99.995683]
        >>> cbloss.effective_number([1, 10, 1000], beta=1.0).tolist()  # inverse frequency
        [1.0, 10.0, 1000.0]
    """
    beta = check_beta(beta)
    xp, n = _as_float64(n, "n")
    _check_counts(xp, n, "n")
    if beta == 1.0:
        return n
    wide = _wider_than_float64(xp)
    if wide is None:
        return _closed_form(xp, n, beta, float)
    return xp.astype(_closed_form(xp, xp.astype(n, wide), beta, wide), xp.float64)


def _wider_than_float64(xp: Any) -> Any:
    """``np.longdouble`` for the NumPy namespace where it has more digits than float64, else None."""
    if array_api_compat.is_numpy_namespace(xp) and np.finfo(np.longdouble).nmant > np.finfo(np.float64).nmant:
        return np.longdouble
    return None


def _closed_form(xp: Any, n: Any, beta: float, scalar: Any) -> Any:
    """``(1 - beta**n) / (1 - beta)`` for ``0 <= beta < 1``, in the precision of ``n`` and ``scalar``."""
    one_minus_beta = scalar(1.0) - scalar(beta)  # exact for beta >= 1/2
    # log(beta): log1p(-(1 - beta)) keeps the digits near beta = 1; below 1/2, log(beta) itself is exact-er.
    if beta >= 0.5:
        log_beta = np.log1p(-one_minus_beta)
    else:
        log_beta = np.log(scalar(beta)) if beta > 0 else -np.inf
    log_beta = scalar(log_beta)  # a Python float on the float64 path: strict namespaces reject NumPy scalars
    # n = 0 would give 0 * -inf = nan at beta = 0; E(0, beta) = 0 for every beta.
    positive = n > 0
    exponent = xp.where(positive, n, xp.ones_like(n)) * log_beta
    covered = -xp.expm1(exponent) / one_minus_beta
    return xp.where(positive, covered, xp.zeros_like(n))


def effective_number_recursive(n: Any, beta: float) -> np.ndarray:
    """The paper's recursion ``E_1 = 1, E_k = 1 + beta * E_{k-1}``, evaluated step by step (``E_0 = 0``).

    A documented reference for the derivation, not for speed: it costs ``max(n)`` steps, so ``n`` must be
    non-negative integers (at most 10**7). Returns a float64 NumPy array shaped like ``n``.

    Example:
        >>> import cbloss
        >>> cbloss.effective_number_recursive([0, 1, 2, 3], beta=0.9).tolist()  # 1, 1 + 0.9, 1 + 0.9 * 1.9
        [0.0, 1.0, 1.9, 2.71]
    """
    beta = check_beta(beta)
    xp, counts = _as_float64(n, "n")  # real numbers (TypeError), finite and >= 0 (ValueError), as effective_number
    _check_counts(xp, counts, "n")
    counts = to_numpy(counts)
    if np.any(counts != np.floor(counts)):
        raise ValueError(f"n: must be non-negative integers, got {counts.tolist()}")
    steps = int(counts.max(initial=0))
    if steps > 10**7:
        raise ValueError(f"n: the recursion takes max(n) steps; {steps} is too many, use effective_number")
    result = np.zeros(counts.shape, dtype=np.float64)
    e = 0.0
    for k in range(1, steps + 1):
        e = 1.0 + beta * e
        result[counts == k] = e
    return result


def beta_from_volume(volume: Any) -> Any:
    """``beta = (N - 1) / N`` for a feature-space volume ``N >= 1`` (``N = inf`` gives ``beta = 1``).

    Python scalars give a Python float; arrays give a float64 array of their namespace.

    Example:
        >>> import numpy as np, cbloss
        >>> cbloss.beta_from_volume(100)
        0.99
        >>> cbloss.beta_from_volume(np.array([1.0, 10.0, np.inf])).tolist()  # 1: no weighting; inf: 1 / n
        [0.0, 0.9, 1.0]
    """
    # Correctly rounded: (v - 1) / v where v - 1 is exact (v <= 2**53), 1 - 1 / v above (1 at v = inf).
    if not is_array(volume) and np.ndim(volume) == 0:
        v = check_real("volume", volume, 1.0, np.inf)
        return (v - 1.0) / v if v <= 2.0**53 else 1.0 - 1.0 / v
    xp, v = _as_float64(volume, "volume")
    if bool(xp.any(~(v >= 1.0))):
        raise ValueError(f"volume: must be >= 1 (and not NaN), got {to_numpy(v).tolist()[:8]}")
    exact = v <= 2.0**53
    below = xp.where(exact, v, xp.ones_like(v))  # no inf / inf where the other branch is taken
    return xp.where(exact, (below - 1.0) / below, 1.0 - 1.0 / v)
