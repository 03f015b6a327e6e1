"""cbloss.adapters.jax: transformations (jit, grad, value_and_grad, vmap), the ClassBalancedLoss pytree, an optax
training step, label validation, dtypes, and parity with optax's own losses. The oracle comparison of every
option lives in tests/test_conformance.py (the jax backend); here the reference is the NumPy core or optax."""

from __future__ import annotations

import numpy as np
import pytest

import cbloss

jax = pytest.importorskip("jax", reason="jax is not installed")
jnp = pytest.importorskip("jax.numpy")
cj = pytest.importorskip("cbloss.adapters.jax")
checkify = pytest.importorskip("jax.experimental.checkify")

LOSSES = [("softmax", None), ("sigmoid", None), ("focal", 2.0), ("focal", 0.5), ("softmax_focal", 2.0)]
REDUCTIONS = ["none", "sum", "mean", "weighted_mean"]


def data(n=6, c=5, seed=0, batch=()):
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 3.0, (*batch, n, c))
    y = rng.integers(0, c, (*batch, n))
    w = rng.uniform(0.25, 3.0, c)
    return z, y, w


def core(z, y, w, **options):
    """The NumPy core's (loss, gradient), float64."""
    return cbloss.class_balanced_loss_and_grad(z, y, w, **options)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("loss", "gamma"), LOSSES)
def test_jit_value_and_grad_equal_core(loss, gamma, reduction):
    z, y, w = data()
    y[2] = -100
    options = {"loss": loss, "gamma": gamma, "reduction": reduction, "ignore_index": -100, "label_smoothing": 0.05}
    want, want_grad = core(z, y, w, **options)

    def f(logits, labels, weights):
        value = cj.class_balanced_loss(logits, labels, weights, **options)
        return jnp.sum(value), value

    (_, value), grad = jax.jit(jax.value_and_grad(f, has_aux=True))(jnp.asarray(z), jnp.asarray(y), jnp.asarray(w))
    np.testing.assert_allclose(np.asarray(value), want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-12, atol=1e-14)
    # jax.grad alone, and the forward-only call, agree
    g2 = jax.grad(lambda q: jnp.sum(cj.class_balanced_loss(q, jnp.asarray(y), w, **options)))(jnp.asarray(z))
    np.testing.assert_allclose(np.asarray(g2), want_grad, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(cj.class_balanced_loss(z, y, w, **options)), want, rtol=1e-12, atol=1e-14)


def test_forward_only_does_not_compute_the_gradient(monkeypatch):
    """The custom_vjp's primal path asks the engine for values only; the gradient is built only under grad."""
    calls = []
    original = cj.evaluate

    def spy(*args, **kwargs):
        calls.append(kwargs["with_grad"])
        return original(*args, **kwargs)

    monkeypatch.setattr(cj, "evaluate", spy)
    z, y, w = data(n=11, c=7)  # a shape no other test compiles, so nothing is cached
    value = cj.class_balanced_loss(jnp.asarray(z), jnp.asarray(y), w, loss="focal")
    assert calls == [False]
    np.testing.assert_allclose(float(value), core(z, y, w, loss="focal")[0], rtol=1e-12)
    calls.clear()
    jax.grad(lambda q: cj.class_balanced_loss(q, jnp.asarray(y), w, loss="focal"))(jnp.asarray(z))
    assert True in calls


def test_gamma_beyond_the_compute_dtype_is_named():
    with pytest.raises(ValueError, match=r"^gamma: must be at most 3.402823e\+38"):
        cj.class_balanced_loss(jnp.zeros((2, 3), jnp.float32), jnp.array([0, 2]), loss="focal", gamma=1e39)


def test_public_functions_leave_numpy_inputs_unchanged():
    """Bitwise, dtype and writability: the adapter never writes into (or freezes) what it is given."""
    rng = np.random.default_rng(5)
    z = rng.normal(0.0, 3.0, (4, 5, 3))  # class axis 1
    y = rng.integers(0, 5, (4, 3))
    y[0, 0] = -100
    t = np.moveaxis(rng.dirichlet(np.ones(5), size=(4, 3)), -1, 1)
    t32 = t.astype(np.float32)
    w = rng.uniform(0.25, 3.0, 5)
    counts = np.array([50, 20, 9, 4, 1])
    inputs = (z, y, t, t32, w, counts)
    before = [(a.dtype, a.shape, a.tobytes()) for a in inputs]
    options = {"axis": 1, "label_smoothing": 0.1}
    cj.class_balanced_loss(z, y, w, ignore_index=-100, **options)
    cj.class_balanced_loss(z, t, w, loss="focal", **options)
    jax.grad(lambda q: cj.class_balanced_loss(q, t32, w, loss="softmax_focal", **options))(z)
    cj.ClassBalancedLoss(counts, 0.9, loss="sigmoid", axis=1)(z, t)
    cj.ClassBalancedLoss.from_weights(w, ignore_index=-100, axis=1)(z, y, validate=False)
    cj.validate_labels(y, 5, ignore_index=-100)
    cj.validate_labels(t32, 5, axis=1)
    assert [(a.dtype, a.shape, a.tobytes()) for a in inputs] == before
    assert all(a.flags.writeable for a in inputs)


@pytest.mark.parametrize(("loss", "gamma"), LOSSES)
def test_vmap_equals_per_problem_core(loss, gamma):
    z, y, w = data(batch=(3,))
    f = jax.vmap(lambda q, t: cj.class_balanced_loss(q, t, w, loss=loss, gamma=gamma, reduction="weighted_mean"))
    values = jax.jit(f)(jnp.asarray(z), jnp.asarray(y))
    grads = jax.jacrev(lambda q: jnp.sum(f(q, jnp.asarray(y))))(jnp.asarray(z))
    for b in range(3):
        want, want_grad = core(z[b], y[b], w, loss=loss, gamma=gamma, reduction="weighted_mean")
        np.testing.assert_allclose(float(values[b]), want, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(grads[b]), want_grad, rtol=1e-12, atol=1e-15)


def test_vmap_with_axis_name_normalises_over_the_mapped_axis():
    """vmap(..., axis_name=) psums the mean's denominator like shard_map: the shares sum to the whole mean."""
    z, y, w = data(n=8)
    z[3] *= 5
    y[5] = -1
    want, want_grad = core(z, y, w, reduction="weighted_mean", ignore_index=-1)

    def share(q, t):
        return cj.class_balanced_loss(q, t, w, reduction="weighted_mean", ignore_index=-1, axis_name="b")

    f = jax.vmap(share, axis_name="b")
    zb, yb = jnp.asarray(z).reshape(4, 2, 5), jnp.asarray(y).reshape(4, 2)
    np.testing.assert_allclose(float(jnp.sum(f(zb, yb))), want, rtol=1e-12)
    grad = jax.grad(lambda q: jnp.sum(f(q, yb)))(zb)
    np.testing.assert_allclose(np.asarray(grad).reshape(8, 5), want_grad, rtol=1e-12, atol=1e-16)


def test_class_axis_and_soft_targets():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(2, 5, 3))  # class axis 1
    t = rng.dirichlet(np.ones(5), size=(2, 3))  # (2, 3, 5): class axis last
    w = rng.uniform(0.5, 2.0, 5)
    for loss in ("softmax", "focal", "softmax_focal"):
        want, want_grad = core(np.moveaxis(z, 1, -1), t, w, loss=loss, label_smoothing=0.1)
        value, grad = jax.value_and_grad(
            lambda q, loss=loss: cj.class_balanced_loss(
                q, jnp.moveaxis(jnp.asarray(t), -1, 1), w, loss=loss, axis=1, label_smoothing=0.1
            )
        )(jnp.asarray(z))
        np.testing.assert_allclose(float(value), want, rtol=1e-12)
        np.testing.assert_allclose(np.moveaxis(np.asarray(grad), 1, -1), want_grad, rtol=1e-12, atol=1e-16)


def test_unbatched_input():
    z, _, w = data()
    want, want_grad = core(z[0], np.asarray(3), w, loss="focal")
    value, grad = jax.value_and_grad(lambda q: cj.class_balanced_loss(q, jnp.asarray(3), w, loss="focal"))(
        jnp.asarray(z[0])
    )
    np.testing.assert_allclose(float(value), want, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-12)


# ----------------------------------------------------------------------------------------------------------
# Parity with optax (an independent implementation) where the definitions coincide
# ----------------------------------------------------------------------------------------------------------
def test_parity_with_optax():
    optax = pytest.importorskip("optax")
    z, y, _ = data(n=9, c=6)
    z, y = jnp.asarray(z), jnp.asarray(y)
    onehot = jax.nn.one_hot(y, 6, dtype=z.dtype)
    pairs = [
        (
            lambda q: cj.class_balanced_loss(q, y),
            lambda q: jnp.mean(optax.softmax_cross_entropy_with_integer_labels(q, y)),
        ),
        # optax averages the binary terms over N * C, the "mean" convention over positions is N: a factor C
        (
            lambda q: cj.class_balanced_loss(q, y, loss="sigmoid") / 6,
            lambda q: jnp.mean(optax.sigmoid_binary_cross_entropy(q, onehot)),
        ),
        (
            lambda q: cj.class_balanced_loss(q, y, loss="focal", gamma=2.0, reduction="sum"),
            lambda q: jnp.sum(optax.sigmoid_focal_loss(q, onehot, alpha=None, gamma=2.0)),
        ),
    ]
    for ours, theirs in pairs:
        np.testing.assert_allclose(float(ours(z)), float(theirs(z)), rtol=1e-12)
        np.testing.assert_allclose(
            np.asarray(jax.grad(ours)(z)), np.asarray(jax.grad(theirs)(z)), rtol=1e-9, atol=1e-14
        )


# ----------------------------------------------------------------------------------------------------------
# ClassBalancedLoss: immutable pytree, jit, optax
# ----------------------------------------------------------------------------------------------------------
def test_class_balanced_loss_holds_core_weights_and_is_a_pytree():
    counts = [500, 120, 40, 9, 3]
    module = cj.ClassBalancedLoss(counts, 0.99, loss="focal", gamma=1.5, reduction="weighted_mean")
    assert isinstance(module.weights, jax.Array)
    np.testing.assert_allclose(np.asarray(module.weights), cbloss.class_balanced_weights(counts, 0.99), rtol=1e-15)
    leaves, treedef = jax.tree_util.tree_flatten(module)
    assert len(leaves) == 1 and leaves[0] is module.weights
    again = jax.tree_util.tree_unflatten(treedef, leaves)
    # beta and normalize made the weights; they are not configuration, so a tree transformation drops them
    assert again.options == module.options and again.axis == module.axis and again.beta is None
    with pytest.raises(AttributeError, match="immutable"):
        module.weights = None
    with pytest.raises(AttributeError, match="immutable"):
        del module.axis
    z, y, _ = data(c=5)
    want, want_grad = core(z, y, cbloss.class_balanced_weights(counts, 0.99), loss="focal", gamma=1.5,
                           reduction="weighted_mean")  # fmt: skip
    # as a jit argument (the weights traced), and closed over
    as_argument = jax.jit(jax.value_and_grad(lambda q, m, t: m(q, t)), static_argnums=())(jnp.asarray(z), module, y)
    closed_over = jax.jit(jax.value_and_grad(lambda q: module(q, jnp.asarray(y))))(jnp.asarray(z))
    for value, grad in (as_argument, closed_over):
        np.testing.assert_allclose(float(value), want, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-12, atol=1e-16)
    # a pytree map transforms the weights only ("weighted_mean" is scale-free; "mean" scales with the weights)
    doubled = jax.tree_util.tree_map(lambda a: 2 * a, module)
    np.testing.assert_allclose(float(doubled(z, y)), float(module(z, y)), rtol=1e-12)
    mean = cj.ClassBalancedLoss(counts, 0.99, loss="focal", gamma=1.5)
    doubled = jax.tree_util.tree_map(lambda a: 2 * a, mean)
    np.testing.assert_allclose(float(doubled(z, y)), 2 * float(mean(z, y)), rtol=1e-12)
    assert "ClassBalancedLoss(num_classes=5" in repr(module)


def test_from_weights_and_unweighted():
    z, y, w = data()
    np.testing.assert_allclose(float(cj.ClassBalancedLoss.from_weights(w)(z, y)), core(z, y, w)[0], rtol=1e-12)
    unweighted = cj.ClassBalancedLoss.from_weights(None, loss="sigmoid")
    assert unweighted.num_classes is None and jax.tree_util.tree_leaves(unweighted) == []
    np.testing.assert_allclose(float(jax.jit(unweighted)(z, y)), core(z, y, None, loss="sigmoid")[0], rtol=1e-12)
    with pytest.raises(ValueError, match="weights"):
        cj.ClassBalancedLoss.from_weights([1.0, -1.0])
    with pytest.raises(ValueError, match="weights"):
        cj.class_balanced_loss(z, y, w[:3])


LABEL_LOSSES = ["softmax", "sigmoid", "focal", "softmax_focal"]


@pytest.mark.parametrize("loss", LABEL_LOSSES)
@pytest.mark.parametrize(
    ("dtype", "ignore_index", "x64"),
    [("uint8", 256, True), ("int8", 128, True), ("int16", -32769, True), ("int32", 2**31, False)],
    ids=["uint8-256", "int8-128", "int16-below", "int32-2**31-no-x64"],
)
def test_an_ignore_index_the_label_dtype_cannot_hold_ignores_nothing(loss, dtype, ignore_index, x64):
    """Only labels equal to ignore_index are ignored (docs/conventions.md §6.4): one outside the label dtype's
    range equals none of them, and must not wrap into it (256 into uint8 is 0, a valid class) nor overflow."""
    z, y, w = data(n=8)
    expected = core(z, y, w, loss=loss, reduction="none")[0]
    labels = y.astype(dtype)
    options = dict(loss=loss, reduction="none", ignore_index=ignore_index)
    with jax.enable_x64(x64):
        results = [cj.class_balanced_loss(z, labels, w, validate=validate, **options) for validate in (None, False)]
        results.append(jax.jit(lambda q, t: cj.class_balanced_loss(q, t, w, **options))(z, labels))
        checked = checkify.checkify(lambda q, t: cj.class_balanced_loss(q, t, w, validate="checkify", **options))
        error, value = jax.jit(checked)(z, labels)
        error.throw()
        for result in (*results, value):
            np.testing.assert_allclose(np.asarray(result), expected, rtol=1e-12 if x64 else 1e-5)


@pytest.mark.parametrize("loss", LABEL_LOSSES)
@pytest.mark.parametrize("ignore_index", [None, -1, 2**63 - 1])
def test_uint64_labels_beyond_int64_give_nan_under_jit(loss, ignore_index):
    """With x64, a uint64 label beyond int64 is read as int64's largest value (its smallest where that is
    ignore_index): unchecked under jit its loss is NaN, never a class's loss nor an ignored position's 0."""
    z, _, w = data(n=3, c=3)
    labels = jnp.asarray(np.array([0, 2**64 - 1, 2**63], np.uint64))
    options = dict(loss=loss, reduction="none", ignore_index=ignore_index, validate=False)
    value = jax.jit(lambda q, t: cj.class_balanced_loss(q, t, w, **options))(z, labels)
    assert np.isfinite(value[0]) and np.isnan(value[1:]).all()


@pytest.mark.parametrize("loss", LABEL_LOSSES)
def test_int64_labels_outside_int32_give_nan_under_jit(loss):
    """Unchecked, an out-of-range label gives NaN (docs/jax.md): JAX's gathers take int64 indices modulo 2**32,
    which would read 2**32 + 1 as class 1."""
    z, _, w = data(n=3, c=3)
    labels = jnp.asarray(np.array([0, 2**32 + 1, -(2**32) + 1], dtype=np.int64))
    step = jax.jit(lambda q, t: cj.class_balanced_loss(q, t, w, loss=loss, reduction="none", validate=False))
    value = step(z, labels)
    assert np.isfinite(value[0]) and np.isnan(value[1:]).all()


def test_labels_are_checked_as_given_without_x64():
    """Eager checks read the labels (and soft targets) the user gave, before JAX converts them: without x64 it
    narrows int64 to int32 (2**32 + 1 would become class 1) and float64 to float32 (with float32's tolerance)."""
    z, _, w = data(n=2, c=3)
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match=r"^labels: class indices must be in \[0, 3\), got \[4294967297\]"):
            cj.class_balanced_loss(z, np.array([0, 2**32 + 1]), w)
        with pytest.raises(ValueError, match=r"^labels: soft targets must sum to 1"):
            cj.class_balanced_loss(z, np.array([[0.5, 0.50001, 0.0], [0.0, 1.0, 0.0]]), w)
        # a label equal to an ignore_index beyond int32 passes the check, and would wrap to 0 in int32
        for validate in (None, False):
            with pytest.raises(ValueError, match=r"^ignore_index: 4294967296 is beyond int32, which the int64 labels"):
                cj.class_balanced_loss(z, np.array([0, 2**32]), w, ignore_index=2**32, validate=validate)
        # one that neither the given dtype nor the narrowed one holds equals no label: nothing to wrap
        unsigned = cj.class_balanced_loss(z, np.array([0, 2], np.uint64), w, ignore_index=-100, reduction="none")
        np.testing.assert_allclose(unsigned, cj.class_balanced_loss(z, np.array([0, 2]), w, reduction="none"))


@pytest.mark.parametrize("make", [np.asarray, jnp.asarray], ids=["numpy", "jax"])
def test_uint32_labels_and_an_ignore_index_beyond_int32_without_x64(make):
    """Without x64 the loss reads uint32 labels as int32, where a label of 2**31 or more is out of range: an
    ignore_index there could not be ignored (its position would give NaN), so it is an error naming it, checked or
    not, eagerly and under jit. One that int32 holds ignores as usual."""
    z, _, w = data(n=2, c=3)
    with jax.enable_x64(False):
        for ignore_index in (2**31, 2**32 - 1):
            labels = make(np.array([0, ignore_index], np.uint32))
            for validate in (None, False):
                with pytest.raises(ValueError, match=r"^ignore_index: \d+ is beyond int32, which the uint32 labels"):
                    cj.class_balanced_loss(z, labels, w, ignore_index=ignore_index, validate=validate)
            with pytest.raises(ValueError, match=r"^ignore_index: \d+ is beyond int32"):
                jax.jit(lambda q, y, k=ignore_index: cj.class_balanced_loss(q, y, w, ignore_index=k))(z, labels)
        labels = make(np.array([0, 255], np.uint32))
        value = cj.class_balanced_loss(z, labels, w, ignore_index=255, reduction="none")
        np.testing.assert_allclose(np.asarray(value), [core(z[:1], np.array([0]), w, reduction="none")[0][0], 0.0])


def test_float_class_indices_are_named_in_the_dtype_given_without_x64():
    """float64 class indices are refused naming the dtype the user gave, not JAX's float32 copy of them."""
    z, _, w = data(n=2, c=3)
    with jax.enable_x64(False):
        with pytest.raises(TypeError, match=r"^labels: class indices must be integers, got dtype float64"):
            cj.class_balanced_loss(z, np.array([0.0, 2.0]), w)


@pytest.mark.parametrize("loss", LABEL_LOSSES)
@pytest.mark.parametrize("given", ["numpy", "list", "uint64"])
def test_unchecked_labels_beyond_int32_are_out_of_range_without_x64(loss, given):
    """Without x64 JAX narrows int64 to int32, wrapping 2**32 + 1 to class 1 and 2**32 - 1 to -1: unchecked
    (validate=False, eagerly or closed over by a jitted function), a label beyond int32 is out of range instead, its
    loss NaN (docs/jax.md), and equals no ignore_index, int32's largest included."""
    z, _, w = data(n=5, c=3)
    labels = [0, 2**32 + 1, 2**32 - 1, -(2**40), 2]
    ignore_indices = (None, -1, 2**31 - 1)
    if given == "uint64":  # narrowed to int32 too (not uint32, whose stand-in could be 0)
        labels, ignore_indices = np.array([0, 2**32 + 1, 2**32 - 1, 2**63, 2], np.uint64), (None, 2**31 - 1)
    labels = np.array(labels, np.int64) if given == "numpy" else labels
    with jax.enable_x64(False):
        for ignore_index in ignore_indices:
            options = dict(loss=loss, reduction="none", ignore_index=ignore_index, validate=False)
            expected = cj.class_balanced_loss(z, np.array([0, 1, 1, 1, 2]), w, **options)
            for value in (
                cj.class_balanced_loss(z, labels, w, **options),
                jax.jit(lambda q, options=options: cj.class_balanced_loss(q, labels, w, **options))(z),
            ):
                value, kept = np.asarray(value), [0, 4]
                assert np.isnan(value[1:4]).all()
                np.testing.assert_array_equal(value[kept], np.asarray(expected)[kept])
        if given == "uint64":  # an ignore_index beyond int32 could match no narrowed label: named
            with pytest.raises(ValueError, match=r"^ignore_index: 4294967295 is beyond int32"):
                cj.class_balanced_loss(z, labels, w, loss=loss, ignore_index=2**32 - 1, validate=False)


def test_numpy_labels_inside_jit_are_concrete():
    """NumPy labels closed over by a jitted function are concrete: checked with validate=None and accepted by
    validate=True (docs/jax.md), although JAX would make a tracer of them."""
    z, y, w = data()
    bad = y.copy()
    bad[0] = 7
    with pytest.raises(ValueError, match=r"^labels: class indices must be in \[0, 5\), got \[7\]"):
        jax.jit(lambda q: cj.class_balanced_loss(q, bad, w))(z)
    checked = jax.jit(lambda q: cj.class_balanced_loss(q, y, w, validate=True))(z)
    np.testing.assert_allclose(float(checked), core(z, y, w)[0], rtol=1e-12)


@pytest.mark.parametrize("argument", ["logits", "labels"])
@pytest.mark.parametrize("value", ["abc", None, [["a"]]], ids=["str", "None", "strings"])
def test_non_numeric_inputs_name_the_argument(argument, value):
    z, y, w = data()
    inputs = {"logits": z, "labels": y, argument: value}
    with pytest.raises(TypeError, match=rf"^{argument}: must be an array"):
        cj.class_balanced_loss(inputs["logits"], inputs["labels"], w)


def test_complex_weights_are_a_type_error():
    """Complex class weights are not real numbers: a TypeError naming them, eagerly and traced."""
    z, y, _ = data()
    weights = jnp.ones(z.shape[-1], dtype=jnp.complex64)
    with pytest.raises(TypeError, match=r"^weights: must be real numbers"):
        cj.class_balanced_loss(z, y, weights)
    with pytest.raises(TypeError, match=r"^weights: must be real numbers"):
        jax.jit(cj.class_balanced_loss)(z, y, weights)
    with pytest.raises(TypeError, match=r"^weights: must be real numbers"):
        cj.ClassBalancedLoss.from_weights(np.ones(3, dtype=np.complex128))


def test_optax_training_step_decreases_the_loss():
    optax = pytest.importorskip("optax")
    rng = np.random.default_rng(0)
    counts = np.array([400, 100, 25, 8])
    centers = rng.normal(0, 2.0, (4, 3))
    labels = np.repeat(np.arange(4), counts)
    x = centers[labels] + rng.normal(0, 1.0, (labels.size, 3))
    x, labels = jnp.asarray(x, jnp.float32), jnp.asarray(labels)
    loss_fn = cj.ClassBalancedLoss(counts, 0.999, loss="focal", gamma=2.0)
    params = {"W": jnp.zeros((3, 4), jnp.float32), "b": jnp.zeros((4,), jnp.float32)}
    optimizer = optax.adam(0.05)
    state = optimizer.init(params)

    @jax.jit
    def step(params, state, loss_fn, x, y):
        loss, grads = jax.value_and_grad(lambda p: loss_fn(x @ p["W"] + p["b"], y))(params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    losses = []
    for _ in range(50):
        params, state, loss = step(params, state, loss_fn, x, labels)
        losses.append(float(loss))
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0]
    assert loss.dtype == jnp.float32


# ----------------------------------------------------------------------------------------------------------
# Label validation
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [-1, 5, 99])
def test_eager_calls_validate_labels(bad):
    z, y, w = data()
    y[1] = bad
    with pytest.raises(ValueError, match=r"labels: class indices must be in \[0, 5\)"):
        cj.class_balanced_loss(jnp.asarray(z), jnp.asarray(y), w)
    with pytest.raises(ValueError, match="labels"):
        cj.validate_labels(y, 5)
    with pytest.raises(ValueError, match="labels"):
        cj.ClassBalancedLoss.from_weights(w)(z, y)
    # constant labels closed over by a traced function are still concrete: checked while tracing
    constant = jnp.asarray(y)
    with pytest.raises(ValueError, match="labels"):
        jax.jit(lambda q: cj.class_balanced_loss(q, constant))(jnp.asarray(z))
    cj.validate_labels(y, 5, ignore_index=bad)  # an ignored label is fine


@pytest.mark.parametrize(("loss", "gamma"), LOSSES)
@pytest.mark.parametrize("bad", [-1, 5])
@pytest.mark.parametrize("weighted", [True, False])
def test_out_of_range_labels_under_jit_give_nan_never_a_wrapped_class(loss, gamma, bad, weighted):
    z, y, w = data()
    y[1] = bad
    w = w if weighted else None
    f = jax.jit(lambda q, t: cj.class_balanced_loss(q, t, w, loss=loss, gamma=gamma, reduction="none"))
    values = np.asarray(f(jnp.asarray(z), jnp.asarray(y)))
    assert np.isnan(values[1])
    others = np.delete(np.arange(6), 1)
    np.testing.assert_allclose(values[others], core(z[others], y[others], w, loss=loss, gamma=gamma,
                                                    reduction="none")[0], rtol=1e-12)  # fmt: skip
    grad = jax.grad(lambda q, t: jnp.sum(f(q, t)))(jnp.asarray(z), jnp.asarray(y))
    assert np.isnan(np.asarray(grad)[1]).all()
    mean = jax.jit(lambda q, t: cj.class_balanced_loss(q, t, w, loss=loss, gamma=gamma))(jnp.asarray(z), jnp.asarray(y))
    assert np.isnan(float(mean))


def test_validate_modes():
    from jax.experimental import checkify

    z, y, w = data()
    y[4] = 7
    z, y = jnp.asarray(z), jnp.asarray(y)
    with pytest.raises(TypeError, match="validate: True needs concrete"):
        jax.jit(lambda q, t: cj.class_balanced_loss(q, t, validate=True))(z, y)
    with pytest.raises(TypeError, match="labels"):
        jax.jit(lambda t: cj.validate_labels(t, 5))(y)
    with pytest.raises(ValueError, match="validate"):
        cj.class_balanced_loss(z, y, validate="sometimes")
    assert np.isnan(float(cj.class_balanced_loss(z, y, validate=False)))
    checked = checkify.checkify(jax.jit(lambda q, t: cj.class_balanced_loss(q, t, w, validate="checkify")))
    err, _ = checked(z, y)
    with pytest.raises(checkify.JaxRuntimeError, match=r"labels: class indices must be in \[0, 5\), got 7"):
        err.throw()
    err, value = checked(z, jnp.where(y == 7, 0, y))
    err.throw()  # no error for valid labels
    assert np.isfinite(float(value))


@pytest.mark.parametrize("bad", [-0.5, np.nan, np.inf, 1e39])
@pytest.mark.parametrize("which", ["weights", "sample_weight"])
def test_checkify_checks_traced_weights_in_the_compute_dtype(bad, which):
    """Traced weights are asserted finite and >= 0 as the loss uses them, in the compute dtype: a float64 weight
    of 1e39 with float32 logits becomes inf there (docs/conventions.md §9, §11.2)."""
    from jax.experimental import checkify

    z, y, w = data()
    z, y = jnp.asarray(z, jnp.float32), jnp.asarray(y)
    given = {"weights": np.asarray(w, np.float64), "sample_weight": np.ones(y.shape, np.float64)}
    given[which][1] = bad

    def loss(weights, sample_weight):
        return cj.class_balanced_loss(z, y, weights, sample_weight=sample_weight, validate="checkify")

    checked = checkify.checkify(jax.jit(loss))
    err, _ = checked(jnp.asarray(given["weights"]), jnp.asarray(given["sample_weight"]))
    with pytest.raises(checkify.JaxRuntimeError, match=rf"^{which}: must be finite and >= 0 in the compute dtype"):
        err.throw()
    given[which][1] = 3e38  # within float32's range: no error, and the value the eager call gives
    err, value = checked(jnp.asarray(given["weights"]), jnp.asarray(given["sample_weight"]))
    err.throw()
    expected = cj.class_balanced_loss(z, y, given["weights"], sample_weight=given["sample_weight"])
    assert float(value) == pytest.approx(float(expected), rel=1e-6)


def test_checkify_checks_soft_targets_with_the_given_dtypes_tolerance():
    from jax.experimental import checkify

    z, _, _ = data(c=2)
    checked = checkify.checkify(jax.jit(lambda q, t: cj.class_balanced_loss(q, t, validate="checkify")))
    near = np.tile([0.5, 0.505], (6, 1))  # sums to 1.005 (1.00488 in float16)
    err, value = checked(jnp.asarray(z), jnp.asarray(near, jnp.float16))
    err.throw()  # within float16's tolerance, 1e-2
    np.testing.assert_allclose(
        float(value), core(z, near.astype(np.float16).astype(np.float64), None, validate=False)[0], rtol=1e-12
    )
    cj.validate_labels(near.astype(np.float16), 2)  # the eager check agrees
    for targets in (near, near * 0.9):  # float32: tolerance sqrt(eps) = 3.5e-4; the second sums to 0.9045
        err, _ = checked(jnp.asarray(z), jnp.asarray(targets, jnp.float32))
        with pytest.raises(checkify.JaxRuntimeError, match="labels: soft targets must sum to 1"):
            err.throw()
        with pytest.raises(ValueError, match="labels: soft targets must sum to 1"):
            cj.validate_labels(targets.astype(np.float32), 2)
    # float64 targets that sum to 1 to float64's tolerance, with float32 logits: checked before the cast to float32,
    # which would move their sums by float32 rounding (about 6e-8 here) beyond that tolerance (1.5e-8)
    many = np.random.default_rng(0).dirichlet(np.full(1000, 0.05), size=8)
    assert np.abs(many.astype(np.float32).sum(-1, dtype=np.float32) - 1).max() > 2e-8
    err, value = checked(jnp.asarray(np.ones((8, 1000)), jnp.float32), jnp.asarray(many))
    err.throw()
    assert value.dtype == jnp.float32
    negative = np.tile([1.25, -0.25], (6, 1))  # sums to 1
    err, _ = checked(jnp.asarray(z), jnp.asarray(negative))
    with pytest.raises(checkify.JaxRuntimeError, match="labels: soft targets must be finite probabilities >= 0"):
        err.throw()


def test_soft_target_validation():
    z, _, _ = data()
    t = np.full((6, 5), 0.3)
    with pytest.raises(ValueError, match="labels: soft targets must sum to 1"):
        cj.class_balanced_loss(jnp.asarray(z), jnp.asarray(t))
    t[0] = [-0.5, 0.5, 0.5, 0.25, 0.25]
    with pytest.raises(ValueError, match="labels: soft targets"):
        cj.validate_labels(t, 5)


def test_shape_and_type_errors_name_the_argument():
    z, y, _ = data()
    with pytest.raises(ValueError, match="labels"):
        cj.class_balanced_loss(jnp.asarray(z), jnp.asarray(y[:3]))
    with pytest.raises(TypeError, match="logits"):
        cj.class_balanced_loss(jnp.asarray(y), jnp.asarray(y))
    with pytest.raises(ValueError, match="loss"):
        cj.class_balanced_loss(jnp.asarray(z), jnp.asarray(y), loss="hinge")
    with pytest.raises(ValueError, match="gamma"):
        cj.ClassBalancedLoss([1, 2, 3], 0.9, loss="focal", gamma=-1.0)


# ----------------------------------------------------------------------------------------------------------
# Dtypes
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize(("loss", "gamma"), LOSSES)
def test_low_precision_computes_in_float32(dtype, loss, gamma):
    z, y, w = data()
    low = jnp.asarray(z, dtype)
    exact = np.asarray(low.astype(jnp.float32), dtype=np.float64)  # the rounded logits, exactly
    want, want_grad = core(exact.astype(np.float32), y, w, loss=loss, gamma=gamma)
    value, grad = jax.jit(jax.value_and_grad(lambda q: cj.class_balanced_loss(q, jnp.asarray(y), w, loss=loss,
                                                                             gamma=gamma)))(low)  # fmt: skip
    assert value.dtype == jnp.float32 and grad.dtype == jnp.dtype(dtype)
    np.testing.assert_allclose(float(value), want, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(grad.astype(jnp.float32)), want_grad, rtol=2.0**-7, atol=1e-6)


def test_float32_and_float64():
    z, y, w = data()
    for dtype, rtol in (("float32", 1e-5), ("float64", 1e-13)):
        value, grad = jax.jit(jax.value_and_grad(lambda q: cj.class_balanced_loss(q, jnp.asarray(y), w)))(
            jnp.asarray(z, dtype)
        )
        assert value.dtype == grad.dtype == jnp.dtype(dtype)
        want, want_grad = core(z, y, w)
        np.testing.assert_allclose(float(value), want, rtol=rtol)
        np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=rtol, atol=rtol * 1e-2)


def test_extreme_logits_stay_finite():
    z = jnp.asarray([[1e4, -1e4, 0.0], [-1e4, 1e4, 3.0]], jnp.float32)
    y = jnp.asarray([1, 1])
    for loss, gamma in [*LOSSES, ("focal", 0.25), ("softmax_focal", 0.25)]:
        value, grad = jax.jit(jax.value_and_grad(lambda q, loss=loss, gamma=gamma: cj.class_balanced_loss(
            q, y, loss=loss, gamma=gamma)))(z)  # fmt: skip
        assert np.isfinite(float(value)) and np.isfinite(np.asarray(grad)).all(), loss


def test_import_cbloss_does_not_import_jax():
    import subprocess
    import sys

    code = "import sys, cbloss; assert 'jax' not in sys.modules, 'import cbloss imported jax'"
    subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(cbloss.__file__).parents[1])
    )


@pytest.mark.parametrize("multi_label", ["class", "sample"])
@pytest.mark.parametrize("dtype", ["bool", "int32", "float64"])
def test_multi_hot_targets_equal_core(multi_label, dtype):
    from jax.experimental import checkify

    z, _, w = data()
    targets = np.random.default_rng(4).uniform(size=z.shape) < 0.4
    options = {"loss": "focal", "multi_label": multi_label, "label_smoothing": 0.1, "reduction": "mean"}
    want, want_grad = core(z, targets.astype(np.float64), w, **options)
    given = jnp.asarray(targets.astype(dtype))
    step = jax.jit(jax.value_and_grad(lambda q, t: cj.class_balanced_loss(q, t, w, **options)))
    module = cj.ClassBalancedLoss.from_weights(w, **options)  # eager: the targets are checked, then used
    for value, grad in (step(jnp.asarray(z), given), jax.value_and_grad(module)(jnp.asarray(z), given)):
        np.testing.assert_allclose(float(value), want, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-12, atol=1e-15)
    if dtype != "bool":  # a target outside [0, 1]: eager, validate_labels and checkify all reject it
        bad = np.where(targets, 1, 0).astype(dtype)
        bad[0, 0] = 2
        with pytest.raises(ValueError, match=r"labels: multi-hot targets must be in \[0, 1\]"):
            cj.class_balanced_loss(z, bad, w, **options)
        with pytest.raises(ValueError, match=r"labels: multi-hot targets must be in \[0, 1\]"):
            cj.validate_labels(bad, 5, multi_label=True)
        checked = checkify.checkify(
            jax.jit(lambda q, t: cj.class_balanced_loss(q, t, w, validate="checkify", **options))
        )
        err, _ = checked(jnp.asarray(z), jnp.asarray(bad))
        with pytest.raises(checkify.JaxRuntimeError, match=r"labels: multi-hot targets must be in \[0, 1\]"):
            err.throw()
        checked(jnp.asarray(z), given)[0].throw()


def test_integer_and_bool_multi_hot_targets():
    """Multi-hot targets as integers or bools, under jit: the oracle's loss and gradient of the same 0/1 floats."""
    from tests.framework_checks import check_integer_and_bool_multi_hot

    def loss_and_grad(logits, targets, weights, dtype, **options):
        def loss_fn(z, t):
            return cj.class_balanced_loss(z, t, weights, **options)

        value, grad = jax.jit(jax.value_and_grad(loss_fn))(jnp.asarray(logits), jnp.asarray(targets.astype(dtype)))
        return float(value), np.asarray(grad)

    check_integer_and_bool_multi_hot(loss_and_grad, [np.int32, np.uint8, np.bool_])
