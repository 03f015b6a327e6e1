"""The small Array-API namespace over TensorFlow: each function against NumPy's (the standard's semantics),
eagerly and, where shapes matter, under tf.function with unknown dimensions."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from cbloss.adapters._tf_namespace import namespace as xp


def test_dtypes_and_isdtype():
    assert xp.isdtype(xp.float32, "real floating") and xp.isdtype(tf.bfloat16, "real floating")
    assert xp.isdtype(xp.int64, "integral") and xp.isdtype(xp.int32, "signed integer")
    assert xp.isdtype(xp.uint8, "unsigned integer") and not xp.isdtype(xp.uint8, "signed integer")
    assert xp.isdtype(xp.bool, "bool") and not xp.isdtype(xp.bool, "numeric")
    assert xp.isdtype(xp.float64, ("integral", "real floating")) and xp.isdtype(xp.float64, xp.float64)
    assert not xp.isdtype(xp.float32, "integral") and xp.isdtype(xp.complex64, "complex floating")
    with pytest.raises(ValueError, match="kind"):
        xp.isdtype(xp.float32, "floating")


def test_creation_and_casts():
    x = xp.asarray([1.5, -2.0], dtype=xp.float64)
    assert x.dtype == tf.float64
    assert xp.astype(x, xp.float32).dtype == tf.float32
    assert xp.astype(x, xp.float64) is x
    assert xp.asarray(x, dtype=xp.float32).dtype == tf.float32
    np.testing.assert_array_equal(xp.ones((2, 3), dtype=xp.float64).numpy(), np.ones((2, 3)))
    np.testing.assert_array_equal(xp.ones_like(tf.constant([1, 2]), dtype=xp.float32).numpy(), [1.0, 1.0])
    np.testing.assert_array_equal(xp.zeros_like(x).numpy(), [0.0, 0.0])
    np.testing.assert_array_equal(xp.arange(4, dtype=xp.int32).numpy(), np.arange(4))
    np.testing.assert_array_equal(xp.arange(1, 7, 2).numpy(), np.arange(1, 7, 2))
    assert isinstance(xp.device(x), str)


def test_elementwise_and_reductions_match_numpy():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 4, 5))
    t = tf.constant(a)
    for name in ("abs", "exp", "expm1", "log1p", "isfinite"):
        ours = getattr(xp, name)(t if name != "log1p" else tf.abs(t)).numpy()
        np.testing.assert_allclose(ours, getattr(np, name)(a if name != "log1p" else np.abs(a)), rtol=1e-15)
    np.testing.assert_allclose(xp.log(tf.abs(t)).numpy(), np.log(np.abs(a)), rtol=1e-15)
    np.testing.assert_allclose(xp.pow(tf.abs(t), 1.5).numpy(), np.abs(a) ** 1.5, rtol=1e-15)
    np.testing.assert_array_equal(xp.where(t > 0, t, 0.0).numpy(), np.where(a > 0, a, 0.0))
    for axis in (None, 0, -1, (0, 2)):
        for keepdims in (False, True):
            np.testing.assert_allclose(
                xp.sum(t, axis=axis, keepdims=keepdims).numpy(), np.sum(a, axis=axis, keepdims=keepdims), rtol=1e-14
            )
            np.testing.assert_array_equal(
                xp.max(t, axis=axis, keepdims=keepdims).numpy(), np.max(a, axis=axis, keepdims=keepdims)
            )
    for axis in (None, 1, -1):
        for keepdims in (False, True):
            np.testing.assert_array_equal(
                xp.argmax(t, axis=axis, keepdims=keepdims).numpy(), np.argmax(a, axis=axis, keepdims=keepdims)
            )
    assert bool(xp.any(t > 2.5)) == bool(np.any(a > 2.5))
    assert bool(xp.any(tf.constant([0, 0]))) is False


def test_indexing_and_shapes_match_numpy():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(3, 4, 5))
    t = tf.constant(a)
    for axis in (0, 1, 2, -1, -3):
        idx = rng.integers(0, a.shape[axis], size=(*a.shape[: axis % 3], 2, *a.shape[axis % 3 + 1 :]))
        np.testing.assert_array_equal(
            xp.take_along_axis(t, tf.constant(idx), axis=axis).numpy(), np.take_along_axis(a, idx, axis=axis)
        )
    np.testing.assert_array_equal(xp.take(t, tf.constant([2, 0]), axis=-1).numpy(), np.take(a, [2, 0], axis=-1))
    np.testing.assert_array_equal(xp.take(t, tf.constant([7]), axis=None).numpy(), np.take(a, [7]))
    np.testing.assert_array_equal(xp.reshape(t, (-1, 5)).numpy(), a.reshape(-1, 5))
    for src, dst in ((0, -1), (-1, 0), (1, 2), (2, 2)):
        np.testing.assert_array_equal(xp.moveaxis(t, src, dst).numpy(), np.moveaxis(a, src, dst))


def test_unknown_dimensions_under_tf_function():
    """Shapes with None: reshape takes a TensorShape with one unknown dimension, ones a dynamic shape."""

    @tf.function(input_signature=[tf.TensorSpec([None, 4, None], tf.float32)])
    def f(x):
        flat = xp.reshape(x, (-1,))
        back = xp.reshape(flat, tf.shape(x))
        ones = xp.ones(tf.shape(x)[:2], dtype=xp.float32)
        picked = xp.take_along_axis(x, xp.zeros_like(x[..., :1], dtype=xp.int64), axis=2)
        return back, ones, picked, xp.moveaxis(x, 2, 0)

    a = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    back, ones, picked, moved = f(tf.constant(a))
    np.testing.assert_array_equal(back.numpy(), a)
    np.testing.assert_array_equal(ones.numpy(), np.ones((2, 4)))
    np.testing.assert_array_equal(picked.numpy(), a[..., :1])
    np.testing.assert_array_equal(moved.numpy(), np.moveaxis(a, 2, 0))
    with pytest.raises(ValueError, match="unknown dimensions"):
        xp.ones(tf.TensorShape([None, None]))


def test_matmul_matches_numpy():
    """The engine's N-D @ 1-D (soft targets times class weights), and the standard's other operand ranks."""
    rng = np.random.default_rng(2)
    a, v, m = rng.normal(size=(2, 3, 4)), rng.normal(size=4), rng.normal(size=(4, 5))
    for x1, x2 in ((a, v), (a[0], v), (v, v), (v, m), (v, a.transpose(0, 2, 1)), (a, m), (a[0], m)):
        np.testing.assert_allclose(xp.matmul(tf.constant(x1), tf.constant(x2)).numpy(), x1 @ x2, rtol=1e-14)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 4], tf.float64)])
    def f(x):
        return xp.matmul(x, tf.constant(v))

    np.testing.assert_allclose(f(tf.constant(a)).numpy(), a @ v, rtol=1e-14)
