"""Class counts and JAX: count_samples_per_class on JAX inputs (the framework-free cases are in
tests/test_weights.py), a loss built from the wrong number of counts, and all_reduce_counts across devices (a
subprocess with two host devices) and processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import cbloss
from tests.framework_checks import (
    check_count_multi_hot_bfloat16,
    check_validate_labels,
    check_weights_beyond_float32,
)
from tests.test_weights import LABELS, _check_counts

jax = pytest.importorskip("jax", reason="jax is not installed")
jnp = pytest.importorskip("jax.numpy")
cj = pytest.importorskip("cbloss.adapters.jax")


def test_count_from_jax():
    _check_counts(cbloss.count_samples_per_class(jnp.asarray(LABELS), 5))
    _check_counts(cbloss.count_samples_per_class([jnp.asarray(LABELS[0]), jnp.asarray(LABELS[1])], 5))


# ----------------------------------------------------------------------------------------------------------
# A loss built from counts names them when their number does not match the logits
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("shape", "axis"), [((6, 5), -1), ((6, 5, 2), 1)])
def test_wrong_number_of_counts_names_samples_per_class(shape, axis):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=shape)
    labels = rng.integers(0, 4, shape[:1] + shape[2:])
    loss_fn = cj.ClassBalancedLoss([40, 20, 10, 5], 0.99, loss="focal", axis=axis)  # 4 counts, 5 classes
    message = r"^samples_per_class: 4 class counts were given, but the logits' class axis \(\d\) has 5 classes"
    with pytest.raises(ValueError, match=message):
        loss_fn(logits, labels)
    with pytest.raises(ValueError, match=message):  # closed over by a jitted function: checked while tracing
        jax.jit(lambda q, t: loss_fn(q, t))(jnp.asarray(logits), jnp.asarray(labels))
    with pytest.raises(ValueError, match=message):
        jax.grad(lambda q: loss_fn(q, labels, np.ones(labels.shape)))(jnp.asarray(logits))
    with pytest.raises(ValueError, match=message):  # an argument of the transformation: rebuilt from its pytree
        jax.jit(lambda f, q, t: f(q, t))(loss_fn, jnp.asarray(logits), jnp.asarray(labels))
    with pytest.raises(ValueError, match=message):
        jax.grad(lambda q, f: f(q, labels))(jnp.asarray(logits), loss_fn)
    # given weights of the wrong length are the weights' fault
    given = cj.ClassBalancedLoss.from_weights(np.ones(4), axis=axis)
    with pytest.raises(ValueError, match=r"^weights: expected 5 class weights"):
        given(logits, labels)
    with pytest.raises(ValueError, match=r"^weights: expected 5 class weights"):
        cj.class_balanced_loss(logits, labels, np.ones(4), axis=axis)
    # the right number of counts works
    good = cj.ClassBalancedLoss([40, 20, 10, 5, 1], 0.99, loss="focal", axis=axis)
    weights = cbloss.class_balanced_weights([40, 20, 10, 5, 1], 0.99)
    want = cbloss.class_balanced_loss(logits, labels, weights, loss="focal", axis=axis)
    np.testing.assert_allclose(float(good(logits, labels)), want, rtol=1e-12)


# ----------------------------------------------------------------------------------------------------------
# all_reduce_counts
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [list, np.asarray, jnp.asarray, lambda c: np.asarray(c, np.int32)])
def test_all_reduce_counts_in_one_process_returns_the_counts_as_int64(make):
    counts = [7, 0, 3, 12]
    given = make(counts)
    got = cj.all_reduce_counts(given)
    _check_counts(got, np.array(counts))
    assert got is not given
    np.testing.assert_array_equal(np.asarray(given), counts)  # not written into


def test_all_reduce_counts_sums_the_processes_exactly(monkeypatch):
    """Two processes (jax.process_count and process_allgather stood in for), counts beyond int32: the sum is
    exact int64 whatever the payload's dtype."""
    from jax.experimental import multihost_utils

    sent = []

    def allgather(payload, tiled=False):
        sent.append(np.asarray(payload).dtype)
        return np.stack([payload, payload])  # both processes hold the same counts

    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(multihost_utils, "process_allgather", allgather)
    counts = np.array([3 * 2**40 + 5, 2**31 - 1, 2**31, 0])
    _check_counts(cj.all_reduce_counts(counts), 2 * counts)
    assert sent and all(dtype.itemsize <= 4 for dtype in sent)  # what JAX would cast to int32 is never sent


def test_all_reduce_counts_rejects_bad_counts():
    for bad in ([[1, 2]], [1.5, 2.0], [-1, 2], [np.nan, 1.0], [1e30], np.array([2**63], np.uint64), "abc"):
        with pytest.raises((ValueError, TypeError), match=r"^samples_per_class:"):
            cj.all_reduce_counts(bad)
    with pytest.raises(TypeError, match=r"^samples_per_class: traced"):
        jax.jit(cj.all_reduce_counts)(jnp.asarray([1, 2]))
    with pytest.raises(ValueError, match=r"^samples_per_class:"):
        jax.vmap(lambda c: cj.all_reduce_counts(c, "i"), axis_name="i")(jnp.ones((2, 2, 3), int))


# Runs with two host devices: each device holds an uneven shard of the labels, padded with -1 (which one_hot
# maps to no class), or the shards are counted on the host and their (2, C) counts stacked and summed.
_TWO_DEVICES = textwrap.dedent(
    """
    import json, sys
    import numpy as np, jax, jax.numpy as jnp, cbloss
    from jax.sharding import NamedSharding, PartitionSpec as P
    from cbloss.adapters.jax import all_reduce_counts

    assert jax.device_count() == 2, jax.devices()
    C = 5
    labels = np.array(json.loads(sys.argv[1]))
    shards = [labels[:9], labels[9:]]  # uneven: 9 and 4 labels
    size = max(len(s) for s in shards)
    padded = np.stack([np.pad(s, (0, size - len(s)), constant_values=-1) for s in shards])
    mesh = jax.make_mesh((2,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))

    def count_on_device(shard):  # (1, size) labels -> the (C,) counts of all devices
        local = jnp.sum(jax.nn.one_hot(shard[0], C, dtype=jnp.int32), axis=0)
        return all_reduce_counts(local, axis_name="data")

    on_device = jax.jit(jax.shard_map(count_on_device, mesh=mesh, in_specs=P("data"), out_specs=P()))
    by_shard_map = on_device(jax.device_put(jnp.asarray(padded), NamedSharding(mesh, P("data"))))
    by_pmap = jax.pmap(lambda s: count_on_device(s[None]), axis_name="data")(jnp.asarray(padded))

    host = np.stack([cbloss.count_samples_per_class(s, C) for s in shards])  # counted per shard on the host
    summed = jax.jit(jax.shard_map(lambda c: all_reduce_counts(c[0], "data"), mesh=mesh, in_specs=P("data"),
                                   out_specs=P()))(jax.device_put(jnp.asarray(host), NamedSharding(mesh, P("data"))))
    print(json.dumps({
        "shard_map": np.asarray(by_shard_map).tolist(),
        "pmap": np.asarray(by_pmap).tolist(),
        "host_shards": np.asarray(summed).tolist(),
        "local": host.tolist(),
        "one_process": all_reduce_counts(cbloss.count_samples_per_class(labels, C)).tolist(),
    }))
    """
)


def test_all_reduce_counts_over_two_devices_equals_counting_the_whole_data_set():
    labels = np.array([0, 2, 2, 4, 1, 0, 2, 2, 3, 4, 4, 0, 2])
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", _TWO_DEVICES, json.dumps(labels.tolist())],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    want = cbloss.count_samples_per_class(labels, 5).tolist()  # the whole data set, counted here
    assert want == [3, 1, 5, 1, 3]
    assert got["local"][0] != want and got["local"][1] != want  # each device alone sees only its shard
    assert got["shard_map"] == got["host_shards"] == got["one_process"] == want
    assert got["pmap"] == [want, want]  # every device holds the sum


def test_count_multi_hot_bfloat16_arrays():
    check_count_multi_hot_bfloat16(lambda t: jax.numpy.asarray(t, dtype=jax.numpy.bfloat16))


def test_validate_labels_reads_arrays_and_refuses_tracers():
    check_validate_labels(jax.numpy.asarray, lambda t: jax.numpy.asarray(t, jax.numpy.bfloat16), jax.jit)


def test_count_multi_hot_numpy_bfloat16():
    """NumPy arrays of ml_dtypes' bfloat16 (what np.asarray gives for a JAX bfloat16 array) are counted too."""
    check_count_multi_hot_bfloat16(lambda t: np.asarray(jax.numpy.asarray(t, dtype=jax.numpy.bfloat16)))


def test_weights_beyond_float32_are_named():
    check_weights_beyond_float32(lambda z, y, w: cj.class_balanced_loss(z, y, w, reduction="sum"), jnp.asarray)
