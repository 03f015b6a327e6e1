"""Data parallelism on two host CPU devices: a sharded batch's loss and gradient equal the whole batch's.

* ``shard_map`` with ``axis_name``: each device returns its share (the ``mean``/``weighted_mean`` denominator
  ``lax.psum``-ed); ``lax.psum`` of the shares is the whole-batch loss, the per-device logit gradients are the
  whole-batch gradient's slices, and gradients of replicated parameters (summed across devices by shard_map's
  transpose) equal the whole batch's.
* ``pmap`` with ``axis_name``: the same.
* A batch sharded with ``jax.sharding`` (explicit and auto meshes) under plain ``jit``: no ``axis_name``.

tests/jax/conftest.py sets ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` before jax starts; if jax was
already started with one device (another import came first), the module reruns itself in a fresh subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cbloss

jax = pytest.importorskip("jax", reason="jax is not installed")
jnp = pytest.importorskip("jax.numpy")
cj = pytest.importorskip("cbloss.adapters.jax")
P = jax.sharding.PartitionSpec

OPTIONS = [
    {"reduction": "mean"},
    {"reduction": "weighted_mean", "ignore_index": -100},
    {"reduction": "mean", "ignore_index": -100, "label_smoothing": 0.1, "loss": "focal", "gamma": 2.0},
    {"reduction": "weighted_mean", "loss": "softmax_focal", "gamma": 0.5},
    {"reduction": "sum", "loss": "sigmoid"},
]
IDS = ["mean", "weighted_mean-ignore", "focal-mean-ignore-smooth", "softmax_focal-weighted_mean", "sigmoid-sum"]


def _two_devices() -> bool:
    return jax.device_count() >= 2


@pytest.fixture(autouse=True)
def _needs_two_devices(request):
    if not _two_devices():
        pytest.skip("fewer than 2 devices in this process: checked by test_in_subprocess_with_two_devices")


def test_in_subprocess_with_two_devices():
    """Runs this module in a fresh interpreter with two host devices when this process has only one."""
    if _two_devices():
        return
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__).resolve())],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def batch(n=8, c=5, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 3.0, (n, c))
    y = rng.integers(0, c, n)
    y[[1, 6]] = -100  # ignored positions on both shards (only used with ignore_index)
    w = rng.uniform(0.25, 3.0, c)
    return jnp.asarray(z, dtype), jnp.asarray(y), jnp.asarray(w, dtype)


def whole(z, y, w, options):
    y = y if "ignore_index" in options else jnp.abs(y) % z.shape[-1]
    return jax.value_and_grad(lambda q: cj.class_balanced_loss(q, y, w, **options))(z), y


def mesh(kind):
    types = (jax.sharding.AxisType.Explicit if kind == "explicit" else jax.sharding.AxisType.Auto,)
    return jax.make_mesh((2,), ("data",), axis_types=types)


@pytest.mark.parametrize("options", OPTIONS, ids=IDS)
@pytest.mark.parametrize("kind", ["explicit", "auto"])
def test_shard_map_with_axis_name_equals_whole_batch(options, kind):
    z, y, w = batch()
    (want, want_grad), y = whole(z, y, w, options)
    m = mesh(kind)

    def body(zz, yy):
        share, grad = jax.value_and_grad(lambda q: cj.class_balanced_loss(q, yy, w, axis_name="data", **options))(zz)
        return jax.lax.psum(share, "data"), grad

    f = jax.jit(jax.shard_map(body, mesh=m, in_specs=(P("data"), P("data")), out_specs=(P(), P("data"))))
    sharding = jax.sharding.NamedSharding(m, P("data"))
    value, grad = f(jax.device_put(z, sharding), jax.device_put(y, sharding))
    np.testing.assert_allclose(float(value), float(want), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(want_grad), rtol=1e-13, atol=1e-16)
    # the core (NumPy) agrees too: the whole batch is the reference, not another JAX call
    ref = cbloss.class_balanced_loss(np.asarray(z), np.asarray(y), np.asarray(w), **options)
    np.testing.assert_allclose(float(value), ref, rtol=1e-12)


@pytest.mark.parametrize("options", OPTIONS[:3], ids=IDS[:3])
def test_shard_map_parameter_gradients_equal_whole_batch(options):
    """A linear model with replicated parameters: shard_map sums the per-device parameter gradients."""
    _, y, w = batch()
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(8, 3)))
    params = jnp.asarray(rng.normal(size=(3, 5)))
    y = y if "ignore_index" in options else jnp.abs(y) % 5

    def loss(p, xx, yy, axis_name=None):
        return cj.class_balanced_loss(xx @ p, yy, w, axis_name=axis_name, **options)

    want = jax.grad(loss)(params, x, y)
    m = mesh("explicit")
    body = jax.shard_map(
        lambda p, xx, yy: jax.grad(loss)(p, xx, yy, "data"), mesh=m, in_specs=(P(), P("data"), P("data")), out_specs=P()
    )
    put = jax.device_put
    got = jax.jit(body)(
        put(params, jax.sharding.NamedSharding(m, P())),
        put(x, jax.sharding.NamedSharding(m, P("data"))),
        put(y, jax.sharding.NamedSharding(m, P("data"))),
    )
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("options", OPTIONS, ids=IDS)
def test_pmap_with_axis_name_equals_whole_batch(options):
    z, y, w = batch()
    (want, want_grad), y = whole(z, y, w, options)

    def body(zz, yy):
        share, grad = jax.value_and_grad(lambda q: cj.class_balanced_loss(q, yy, w, axis_name="data", **options))(zz)
        return jax.lax.psum(share, "data"), grad

    value, grad = jax.pmap(body, axis_name="data")(z.reshape(2, 4, 5), y.reshape(2, 4))
    np.testing.assert_allclose(np.asarray(value), [float(want)] * 2, rtol=1e-13)
    np.testing.assert_allclose(np.asarray(grad).reshape(8, 5), np.asarray(want_grad), rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("options", OPTIONS, ids=IDS)
@pytest.mark.parametrize("kind", ["explicit", "auto"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sharded_batch_under_plain_jit_equals_whole_batch(options, kind, dtype):
    z, y, w = batch(dtype=dtype)
    (want, want_grad), y = whole(z, y, w, options)
    m = mesh(kind)
    sharding = jax.sharding.NamedSharding(m, P("data"))
    zs, ys = jax.device_put(z, sharding), jax.device_put(y, sharding)
    assert len(zs.sharding.device_set) == 2
    module = cj.ClassBalancedLoss.from_weights(np.asarray(w), **options)
    step = jax.jit(jax.value_and_grad(lambda q, t, loss_fn: loss_fn(q, t)))
    value, grad = step(zs, ys, module)
    rtol = 1e-13 if dtype == "float64" else 2e-6
    np.testing.assert_allclose(float(value), float(want), rtol=rtol)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(want_grad), rtol=rtol, atol=rtol * 1e-2)
    assert grad.sharding.is_equivalent_to(zs.sharding, 2)


@pytest.mark.parametrize("options", OPTIONS, ids=IDS)
def test_sample_weight_with_axis_name_equals_whole_batch(options):
    """Per-position sample weights sharded with the labels: the psum'd shares and the per-device gradients
    equal the NumPy core's on the whole batch, under shard_map and pmap (docs/conventions.md §7, §12)."""
    z, y, w = batch()
    y = y if "ignore_index" in options else jnp.abs(y) % 5
    s = jnp.asarray(np.random.default_rng(3).uniform(0.0, 2.0, 8))
    want, want_grad = cbloss.class_balanced_loss_and_grad(
        np.asarray(z), np.asarray(y), np.asarray(w), sample_weight=np.asarray(s), **options
    )

    def body(zz, yy, ss):
        def share(q):
            return cj.class_balanced_loss(q, yy, w, sample_weight=ss, axis_name="data", **options)

        value, grad = jax.value_and_grad(share)(zz)
        return jax.lax.psum(value, "data"), grad

    m = mesh("explicit")
    sharding = jax.sharding.NamedSharding(m, P("data"))
    mapped = jax.jit(jax.shard_map(body, mesh=m, in_specs=(P("data"),) * 3, out_specs=(P(), P("data"))))
    value, grad = mapped(*(jax.device_put(a, sharding) for a in (z, y, s)))
    np.testing.assert_allclose(float(value), want, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-12, atol=1e-16)
    values, grads = jax.pmap(body, axis_name="data")(z.reshape(2, 4, 5), y.reshape(2, 4), s.reshape(2, 4))
    np.testing.assert_allclose(np.asarray(values), [want] * 2, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(grads).reshape(8, 5), want_grad, rtol=1e-12, atol=1e-16)
