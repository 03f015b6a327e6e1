"""Effective number E(n, beta) (docs/conventions.md §2): float64 accuracy against the exact value of the float64 inputs
(mpmath, tests/oracle.py), the beta = 0 and beta = 1 limits, the recursion, and beta_from_volume."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

import cbloss
from tests import oracle

BETAS = [0.0, 1e-300, 0.3, 0.5, 0.9, 0.9999, 1 - 1e-12, float(np.nextafter(1.0, 0.0)), 1.0]
COUNTS = [0, 1e-3, 0.25, 0.5, 1, 1.5, 2, 3, 10, 100, 1234.5, 1e4, 65537, 1e6, 123456789.25, 1e9, 1e10, 3e11, 1e12]


def ulps(got: float, exact: mpmath.mpf) -> float:
    """|got - exact| in units of the spacing of float64 numbers at the correctly rounded exact value."""
    if exact == 0:
        return 0.0 if got == 0 else np.inf
    with mpmath.workdps(oracle.DPS):
        return float(abs(mpmath.mpf(float(got)) - exact) / mpmath.mpf(np.spacing(float(exact))))


def worst_ulps(ns, beta) -> tuple[float, float]:
    got = np.asarray(cbloss.effective_number(np.asarray(ns, dtype=np.float64), beta))
    assert got.dtype == np.float64 and got.shape == np.shape(ns)
    errors = [ulps(g, oracle.effective_number(n, beta)) for n, g in zip(ns, got, strict=True)]
    i = int(np.argmax(errors))
    return errors[i], ns[i]


@pytest.mark.parametrize("beta", BETAS, ids=lambda b: repr(b))
def test_within_2_ulps_of_exact(beta):
    err, n = worst_ulps(COUNTS, beta)
    assert err <= 2.0, f"E(n={n!r}, beta={beta!r}) is {err:.3f} ulps from the exact value"


def _sweep():
    rng = np.random.default_rng(20190601)
    betas = np.concatenate([rng.uniform(0, 1, 150), 1 - 10 ** rng.uniform(-16, -1, 150), rng.uniform(0.45, 0.55, 50)])
    for beta in betas:
        yield float(beta), np.concatenate([10 ** rng.uniform(-3, 12, 5), np.floor(10 ** rng.uniform(0, 12, 5))])


WIDE_LONG_DOUBLE = np.finfo(np.longdouble).nmant > np.finfo(np.float64).nmant


@pytest.mark.skipif(
    not WIDE_LONG_DOUBLE,
    reason="np.longdouble is float64 on this platform: the float64 path's sweep below holds it to 3 ulps",
)
def test_random_sweep_within_2_ulps():
    """The target of docs/conventions.md §15: within 2 ulps of the exact value of the float64 inputs (NumPy
    evaluates in long double and rounds once)."""
    worst = max((*worst_ulps(list(ns), beta), beta) for beta, ns in _sweep())
    assert worst[0] <= 2.0, f"E(n={worst[1]!r}, beta={worst[2]!r}) is {worst[0]:.3f} ulps from the exact value"


def test_random_sweep_float64_path_within_3_ulps():
    """Namespaces other than NumPy evaluate in float64 (four roundings); array_api_strict stands for them."""
    xp = pytest.importorskip("array_api_strict")
    worst = (0.0, None, None)
    for beta, ns in list(_sweep())[::7]:
        got = np.from_dlpack(cbloss.effective_number(xp.asarray(ns), beta))
        for n, value in zip(ns, got, strict=True):
            worst = max(worst, (ulps(float(value), oracle.effective_number(float(n), beta)), float(n), beta))
    assert worst[0] <= 3.0, f"E(n={worst[1]!r}, beta={worst[2]!r}) is {worst[0]:.3f} ulps from the exact value"


def test_beta_one_returns_n_exactly():
    n = np.array([0.0, 0.5, 1.0, 3.0, 1234.5, 123456789.25, 1e12, 2.0**60 + 2**8])
    got = np.asarray(cbloss.effective_number(n, 1.0))
    np.testing.assert_array_equal(got, n)
    assert got.dtype == np.float64


def test_limits():
    n = np.array([0.0, 1.0, 2.0, 17.0, 1e12])
    np.testing.assert_array_equal(cbloss.effective_number(n, 0.0), [0.0, 1.0, 1.0, 1.0, 1.0])
    for beta in BETAS:
        assert float(np.asarray(cbloss.effective_number(np.array([0.0]), beta))[0]) == 0.0  # E(0, beta) = 0
        assert ulps(float(np.asarray(cbloss.effective_number(np.array([1.0]), beta))[0]), mpmath.mpf(1)) <= 1  # E_1


def test_inputs_scalar_list_and_integer_arrays():
    want = np.asarray(cbloss.effective_number(np.array([1.0, 10.0, 100.0]), 0.9))
    for n in ([1, 10, 100], np.array([1, 10, 100], dtype=np.int64), np.array([1, 10, 100], dtype=np.float32)):
        got = np.asarray(cbloss.effective_number(n, 0.9))
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, want)
    assert float(cbloss.effective_number(10, 0.9)) == want[1]


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 0.9, 0.999, 1 - 1e-12, 1.0], ids=lambda b: repr(b))
def test_recursion_equals_closed_form(beta):
    n = np.arange(0, 60)
    rec = np.asarray(cbloss.effective_number_recursive(n, beta))
    closed = np.asarray(cbloss.effective_number(n, beta))
    for k in range(60):
        exact = oracle.effective_number_by_recursion(k, beta)
        # the two exact values agree (the closed form is the recursion's solution)
        assert abs(exact - oracle.effective_number(k, beta)) <= mpmath.mpf(10) ** (-40) * max(1, k)
        assert ulps(closed[k], exact) <= 2.0, (k, closed[k], exact)
        # the float64 recursion rounds once per step: at most about one ulp per step
        assert ulps(rec[k], exact) <= max(1.0, k), (k, rec[k], exact)


def test_recursion_shapes_and_large_n():
    n = np.array([[3, 0], [1, 5]])
    rec = np.asarray(cbloss.effective_number_recursive(n, 0.5))
    np.testing.assert_allclose(rec, [[1.75, 0.0], [1.0, 1.9375]], rtol=0, atol=0)
    got = float(np.asarray(cbloss.effective_number_recursive(np.array([20000]), 0.9999))[0])
    assert ulps(got, oracle.effective_number(20000, 0.9999)) <= 20000


LARGE_VOLUMES = [2.0**53 + 2, 9636683472178670.0, 1.0904646070882652e16, 2.0**54 - 4, 2.0**54, 2.0**54 + 4, 1e300]
RANDOM_LARGE_VOLUMES = np.random.default_rng(7).uniform(2.0**53, 2.0**54 + 2**10, 40).tolist()


@pytest.mark.parametrize(
    "volume", [1, 1.5, 2, 3, 10, 1e4, 123456.789, 1e12, 2.0**52, 2.0**53, *LARGE_VOLUMES, *RANDOM_LARGE_VOLUMES]
)
def test_beta_from_volume_correctly_rounded(volume):
    # against mpmath's (N - 1) / N rounded once: N - 1 is exact up to 2**53, and 1 - 1 / N above
    want = oracle.beta_from_volume(volume)
    assert cbloss.beta_from_volume(volume) == want
    got = np.asarray(cbloss.beta_from_volume(np.array([volume, volume])))
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, [want, want])


def test_beta_from_volume_infinite_is_one_and_matches_effective_number():
    assert cbloss.beta_from_volume(np.inf) == 1.0
    # E(n, (N-1)/N) -> N as n -> inf: the covered volume is the whole space
    N = 1000.0
    assert abs(float(cbloss.effective_number(1e9, cbloss.beta_from_volume(N))) - N) <= 1e-9 * N
