"""The neutral core (``cbloss.class_balanced_loss``) on jax arrays: generic Array-API code that jax traces through,
so ``jax.grad``/``jax.vjp`` differentiate the core's formulas themselves (no custom gradient). Both must match the
independent oracle (tests/oracle.py), for the four losses (docs/conventions.md §4, §15)."""

from __future__ import annotations

import numpy as np
import pytest

import cbloss
from tests import oracle

jax = pytest.importorskip("jax", reason="jax is not installed")
jnp = pytest.importorskip("jax.numpy")

LOSSES = ["softmax", "sigmoid", "focal", "softmax_focal"]


def data(seed=0, n=6, c=5):
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 3.0, (n, c))
    y = rng.integers(0, c, n)
    y[2] = -1  # ignored where ignore_index=-1
    t = rng.dirichlet(np.ones(c), size=n)
    w = rng.uniform(0.25, 3.0, c)
    return z, y, t, w


@pytest.mark.parametrize("loss", LOSSES)
def test_jax_grad_through_the_core_matches_the_oracle_hard_labels(loss):
    z, y, _, w = data()
    options = {"loss": loss, "reduction": "weighted_mean", "ignore_index": -1, "label_smoothing": 0.1}
    want = oracle.loss_and_grad(z, y, w, **options)

    def f(q):
        return cbloss.class_balanced_loss(q, jnp.asarray(y), jnp.asarray(w), **options)

    value, grad = jax.value_and_grad(f)(jnp.asarray(z))
    assert isinstance(grad, jax.Array) and grad.dtype == jnp.float64
    np.testing.assert_allclose(float(value), float(want.value), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(grad), want.grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("loss", LOSSES)
def test_jax_vjp_through_the_core_matches_the_oracle_soft_targets(loss):
    z, _, t, w = data(seed=1)
    cotangent = np.random.default_rng(2).uniform(-2.0, 2.0, z.shape[0])
    want = oracle.loss_and_grad(z, t, w, loss=loss, reduction="none", cotangent=cotangent)
    value, vjp = jax.vjp(
        lambda q: cbloss.class_balanced_loss(q, jnp.asarray(t), jnp.asarray(w), loss=loss, reduction="none"),
        jnp.asarray(z),
    )
    (grad,) = vjp(jnp.asarray(cotangent))
    np.testing.assert_allclose(np.asarray(value), want.value, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(np.asarray(grad), want.grad, rtol=1e-12, atol=1e-15)


def test_effective_number_of_jax_counts_is_float64_or_an_error():
    """The effective number is float64 in the counts' namespace (docs/conventions.md §2): with x64 it is, and
    equals NumPy's within the float64 path's ulps; without x64 JAX has no float64 and would hand back float32
    (beta = 1 - 1e-9 from a volume of 1e9 rounded to 1), so that is a TypeError naming the argument."""
    counts = np.array([1.0, 16777217.0, 1e9])
    expected = cbloss.effective_number(counts, 0.9999)
    result = cbloss.effective_number(jnp.asarray(counts), 0.9999)
    assert result.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(result), expected, rtol=1e-15)
    with jax.enable_x64(False):
        with pytest.raises(TypeError, match=r"^n: its namespace gives float32"):
            cbloss.effective_number(jnp.asarray(counts, dtype=jnp.float32), 0.9999)
        with pytest.raises(TypeError, match=r"^volume: its namespace gives float32"):
            cbloss.beta_from_volume(jnp.asarray([1e9], dtype=jnp.float32))


def test_weights_from_bfloat16_counts():
    """bfloat16 counts are real numbers (NumPy reads them as a dtype of kind 'V'): read through float32, exactly."""
    counts = jnp.asarray([300.0, 60.0, 12.0, 3.0, 0.5], dtype=jnp.bfloat16)
    expected = cbloss.class_balanced_weights(np.asarray(counts, dtype=np.float64), 0.99)
    np.testing.assert_array_equal(cbloss.class_balanced_weights(counts, 0.99), expected)


def test_numpy_bfloat16_weights_and_counts_are_read_as_float32():
    """NumPy arrays of ml_dtypes' bfloat16 (which JAX installs) as class weights or class counts: read as float32,
    which holds each of their values exactly (docs/conventions.md §9), as logits and labels of that dtype are."""
    import ml_dtypes

    z, y = np.array([[2.0, 0.0], [0.0, 1.0]]), np.array([0, 1])
    weights = np.array([1.0, 0.5], ml_dtypes.bfloat16)
    value = cbloss.class_balanced_loss(z, y, weights)
    assert float(value) == float(cbloss.class_balanced_loss(z, y, weights.astype(np.float32)))
    counts = np.array([10, 100], ml_dtypes.bfloat16)
    expected = cbloss.class_balanced_weights(counts.astype(np.float32), 0.9)
    np.testing.assert_array_equal(cbloss.class_balanced_weights(counts, 0.9), expected)


def test_numpy_bfloat16_soft_targets_sum_to_1_within_their_own_tolerance():
    """NumPy bfloat16 soft targets, read as float32, are checked to bfloat16's tolerance (1e-2), as validate_labels
    and the other frameworks' bfloat16 targets are: thirds rounded to bfloat16 sum to 1 + 0.002."""
    import ml_dtypes

    thirds = np.full((1, 3), 1 / 3).astype(ml_dtypes.bfloat16)
    cbloss.validate_labels(thirds, 3, soft=True)
    value = cbloss.class_balanced_loss(np.zeros((1, 3), np.float32), thirds)
    assert float(value) == pytest.approx(float(np.log(3.0)) * float(thirds.astype(np.float64).sum()), rel=1e-6)
    off = np.array([[0.5, 0.55, 0.0]]).astype(ml_dtypes.bfloat16)
    with pytest.raises(ValueError, match=r"^labels: soft targets must sum to 1"):
        cbloss.class_balanced_loss(np.zeros((1, 3), np.float32), off)


def test_numpy_bfloat16_class_indices_are_named_in_their_own_dtype():
    """Class indices must be integers: NumPy bfloat16 ones (read as float32) are named bfloat16 in the error."""
    import ml_dtypes

    with pytest.raises(TypeError, match=r"^labels: class indices must be integers, got dtype bfloat16$"):
        cbloss.class_balanced_loss(np.zeros((2, 3)), np.array([0, 1], ml_dtypes.bfloat16))


@pytest.mark.parametrize("name", ["bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e5m2fnuz", "float6_e3m2fn"])
@pytest.mark.parametrize("loss", ["softmax", "focal"])
def test_numpy_arrays_of_every_ml_dtypes_float_are_read_as_float32(name, loss):
    """NumPy arrays of ml_dtypes' floats as logits or soft targets: read as float32, which holds their values
    exactly, the gradient back in the logits' dtype (docs/conventions.md §9). NumPy knows most of them as kind
    'V', float8_e5m2 as kind 'f' without being an np.floating: both are read so."""
    import ml_dtypes

    dtype = getattr(ml_dtypes, name)
    z = np.array([[1.5, -2.0, 0.5], [0.25, 3.0, -1.0]]).astype(dtype)
    targets = np.array([[0.25, 0.25, 0.5], [0.0, 0.5, 0.5]]).astype(dtype)
    value, grad = cbloss.class_balanced_loss_and_grad(z, targets, [1.0, 0.5, 2.0], loss=loss, reduction="sum")
    want, want_grad = cbloss.class_balanced_loss_and_grad(
        z.astype(np.float32), targets.astype(np.float32), [1.0, 0.5, 2.0], loss=loss, reduction="sum"
    )
    assert value.dtype == np.float32 and float(value) == float(want)
    assert grad.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(grad, want_grad.astype(dtype))


# Exact in every float8 (sum 1 + 1/256): within the 1e-2 of the floats narrower than float32, beyond float32's.
FLOAT8_TARGETS = np.array([[0.5, 0.25, 0.125, 0.125, 0.00390625], [0.0, 0.5, 0.5, 0.0, 0.0]])


@pytest.mark.parametrize("name", ["float8_e4m3fn", "float8_e5m2"])
def test_float8_soft_targets_sum_to_1_within_one_tolerance_eager_and_traced(name):
    """Soft targets given in float8 are held to the 1e-2 of the floats narrower than float32 wherever they are
    checked (docs/conventions.md §6.2): NumPy's ml_dtypes arrays, JAX's eagerly (read on the host as float32) and
    under checkify, and validate_labels; a sum off by 1/8 is refused."""
    from jax.experimental import checkify

    from cbloss.adapters.jax import class_balanced_loss

    dtype = getattr(jnp, name)
    z = np.zeros((2, 5), np.float32)
    want = float(cbloss.class_balanced_loss(z, FLOAT8_TARGETS.astype(np.float32), validate=False))
    for logits, targets in (
        (z, FLOAT8_TARGETS.astype(np.dtype(dtype))),
        (jnp.asarray(z), jnp.asarray(FLOAT8_TARGETS, dtype)),
    ):
        cbloss.validate_labels(targets, 5, soft=True)
        assert float(cbloss.class_balanced_loss(logits, targets)) == pytest.approx(want, rel=1e-6)
    targets = jnp.asarray(FLOAT8_TARGETS, dtype)
    assert float(class_balanced_loss(jnp.asarray(z), targets)) == pytest.approx(want, rel=1e-6)
    checked = checkify.checkify(jax.jit(lambda z, t: class_balanced_loss(z, t, validate="checkify")))
    error, value = checked(jnp.asarray(z), targets)
    error.throw()
    assert float(value) == pytest.approx(want, rel=1e-6)
    off = FLOAT8_TARGETS + np.array([[0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.125, 0.0, 0.0]])  # exact in float8
    with pytest.raises(ValueError, match=r"^labels: soft targets must sum to 1"):
        class_balanced_loss(jnp.asarray(z), jnp.asarray(off, dtype))
    with pytest.raises(ValueError, match=r"^labels: soft targets must sum to 1"):
        cbloss.validate_labels(off.astype(np.dtype(dtype)), 5, soft=True)


def test_numpy_ml_dtypes_integers_are_read_as_int64():
    """NumPy arrays of ml_dtypes' integers (int4, uint4, ...; kind 'V' like its floats) are integers: class
    indices and counts as their int64 values, logits of them refused as the integers they are."""
    import ml_dtypes

    z = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    for dtype in (ml_dtypes.int4, ml_dtypes.uint4, ml_dtypes.int2):
        labels = np.array([0, 1]).astype(dtype)
        assert float(cbloss.class_balanced_loss(z, labels)) == float(cbloss.class_balanced_loss(z, np.array([0, 1])))
        numbers = [1, 1, 1] if dtype == ml_dtypes.int2 else [1, 3, 7]  # distinct where the type holds them
        want = cbloss.class_balanced_weights(np.array(numbers), 0.9)
        np.testing.assert_array_equal(cbloss.class_balanced_weights(np.array(numbers).astype(dtype), 0.9), want)
        with pytest.raises(ValueError, match=r"^labels: class indices must have the logits' shape"):
            cbloss.class_balanced_loss(z, np.eye(3)[[0, 1]].astype(dtype))  # integers are no soft targets
    with pytest.raises(TypeError, match=r"^logits: must be floating point, got dtype int4$"):
        cbloss.class_balanced_loss(z.astype(ml_dtypes.int4), np.array([0, 1]))
