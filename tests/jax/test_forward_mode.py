"""Forward and reverse mode through the adapter's custom JVP: ``jvp``, ``jacfwd``, ``linearize``, ``grad``,
``jacrev``, ``hessian``, under ``jit`` and ``vmap``, for every loss and reduction in float32 and float64.

First derivatives are checked against the independent oracle (tests/oracle.py). Second derivatives are checked
against ``jax.hessian`` of :func:`reference_loss`, a float64 ``jax.numpy`` transcription of docs/conventions.md
§4 and §7 whose values and gradients are themselves checked against the oracle here."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import cbloss
from tests import oracle

jax = pytest.importorskip("jax", reason="jax is not installed")
jnp = pytest.importorskip("jax.numpy")
cj = pytest.importorskip("cbloss.adapters.jax")

LOSSES = [("softmax", None), ("sigmoid", None), ("focal", 2.0), ("focal", 0.5), ("softmax_focal", 2.0)]
REDUCTIONS = ["none", "sum", "mean", "weighted_mean"]
DTYPES = ["float64", "float32"]
# Every reduction in float64; float32 (the same code, another dtype) with one reduction: each case compiles
# several transformations, so the grid is kept to what can differ.
REDUCTION_DTYPES = [(reduction, "float64") for reduction in REDUCTIONS] + [("mean", "float32")]
IGNORED = -100


def case(seed=0, n=5, c=4, dtype="float64"):
    """Logits, labels (one ignored) and weights, all exactly representable in ``dtype``."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, (n, c)).astype(dtype).astype(np.float64)
    y = rng.integers(0, c, n)
    y[2] = IGNORED
    w = rng.uniform(0.25, 3.0, c).astype(dtype).astype(np.float64)
    return z, y, w


@functools.cache
def expected(loss, gamma, reduction, dtype, label_smoothing=0.0):
    """The oracle's value and gradient (per position for ``"none"``) of :func:`case`."""
    z, y, w = case(dtype=dtype)
    result = oracle.loss_and_grad(
        z, y, w, loss=loss, gamma=gamma, reduction=reduction, ignore_index=IGNORED, label_smoothing=label_smoothing
    )
    return result.value, result.grad


def tolerances(dtype, scale):
    """(rtol, atol) for a result whose entries are up to ``scale`` in size."""
    if dtype == "float64":
        return 1e-11, 1e-14 * max(1.0, scale)
    return 3e-5, 3e-6 * max(1.0, scale)


def close(got, want, dtype):
    want = np.asarray(want, dtype=np.float64)
    rtol, atol = tolerances(dtype, float(np.max(np.abs(want), initial=0.0)))
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=rtol, atol=atol)


def jacobian_of(grad, reduction):
    """The Jacobian of the loss with respect to the (P, C) logits from the oracle's gradient: the gradient itself
    for a reduced loss; for ``"none"`` the block diagonal ``J[p, q, c] = [p == q] grad[p, c]``."""
    if reduction != "none":
        return grad
    return np.einsum("pq,pc->pqc", np.eye(grad.shape[0]), grad)


def loss_fn(loss, gamma, reduction, y, w, **extra):
    options = {"loss": loss, "gamma": gamma, "reduction": reduction, "ignore_index": IGNORED, **extra}
    return lambda q: cj.class_balanced_loss(q, jnp.asarray(y), jnp.asarray(w, q.dtype), **options)


@pytest.mark.parametrize(("reduction", "dtype"), REDUCTION_DTYPES)
@pytest.mark.parametrize(("loss", "gamma"), LOSSES)
def test_first_derivatives_in_both_modes_equal_the_oracle(loss, gamma, reduction, dtype):
    z, y, w = case(dtype=dtype)
    want_value, want_grad = expected(loss, gamma, reduction, dtype)
    f = loss_fn(loss, gamma, reduction, y, w)
    q = jnp.asarray(z, dtype)
    dz = np.random.default_rng(1).normal(size=z.shape).astype(dtype)
    want_tangent = np.sum(want_grad * dz, axis=-1) if reduction == "none" else np.sum(want_grad * dz)
    want_jacobian = jacobian_of(want_grad, reduction)

    value, tangent = jax.jit(lambda a, da: jax.jvp(f, (a,), (da,)))(q, jnp.asarray(dz))
    assert value.dtype == tangent.dtype == jnp.dtype(dtype)
    close(value, want_value, dtype)
    close(tangent, want_tangent, dtype)

    # linearize: the same tangent, and its transpose is the vector-Jacobian product
    value, linear = jax.linearize(f, q)
    close(value, want_value, dtype)
    close(linear(jnp.asarray(dz)), want_tangent, dtype)
    cotangent = jnp.ones_like(value)
    (transposed,) = jax.linear_transpose(linear, q)(cotangent)
    close(transposed, want_grad, dtype)

    for jacobian in (jax.jit(jax.jacfwd(f)), jax.jit(jax.jacrev(f))):
        got = jacobian(q)
        assert got.shape == want_jacobian.shape and got.dtype == jnp.dtype(dtype)
        close(got, want_jacobian, dtype)
    if reduction != "none":
        close(jax.grad(f)(q), want_grad, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("loss", "gamma"), LOSSES)
def test_vmap_of_forward_mode_equals_the_oracle_per_problem(loss, gamma, dtype):
    problems = [case(seed=seed, dtype=dtype) for seed in (3, 4, 5)]
    z = jnp.asarray(np.stack([p[0] for p in problems]), dtype)
    y = jnp.asarray(np.stack([p[1] for p in problems]))
    w = jnp.asarray(problems[0][2], dtype)
    options = {"loss": loss, "gamma": gamma, "reduction": "weighted_mean", "ignore_index": IGNORED}

    def problem(q, t):
        return cj.class_balanced_loss(q, t, w, **options)

    jacobians = jax.jit(jax.vmap(jax.jacfwd(problem)))(z, y)
    dz = jnp.ones_like(z)
    tangents = jax.vmap(lambda q, t, d: jax.jvp(lambda a: problem(a, t), (q,), (d,))[1])(z, y, dz)
    for b, (zb, yb, _) in enumerate(problems):
        want = oracle.loss_and_grad(zb, yb, problems[0][2], **options)
        close(jacobians[b], want.grad, dtype)
        close(tangents[b], np.sum(want.grad), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("loss", "gamma"), LOSSES)
def test_soft_targets_and_smoothing_in_forward_mode(loss, gamma, dtype):
    rng = np.random.default_rng(7)
    z = rng.normal(0.0, 2.0, (4, 3)).astype(dtype).astype(np.float64)
    t = rng.dirichlet(np.ones(3), size=4).astype(dtype).astype(np.float64)
    w = rng.uniform(0.5, 2.0, 3).astype(dtype).astype(np.float64)
    options = {"loss": loss, "gamma": gamma, "reduction": "none", "label_smoothing": 0.1}
    want = oracle.loss_and_grad(z, t, w, **options)
    f = jax.jit(
        jax.jacfwd(lambda q: cj.class_balanced_loss(q, jnp.asarray(t, dtype), jnp.asarray(w, dtype), **options))
    )
    close(f(jnp.asarray(z, dtype)), jacobian_of(want.grad, "none"), dtype)


# ----------------------------------------------------------------------------------------------------------
# Second derivatives
# ----------------------------------------------------------------------------------------------------------
def reference_loss(z, labels, weights, *, loss, gamma, reduction, ignore_index=None):
    """docs/conventions.md §4 and §7 written out in ``jax.numpy`` for class indices (class axis last): the
    per-class losses ``L_c(z)``, a position's loss ``w_y L_y(z)`` (0 where ignored) and the reduction."""
    gamma = (2.0 if loss in oracle.FOCAL else 0.0) if gamma is None else gamma
    num_classes = z.shape[-1]
    log_p = jax.nn.log_softmax(z, axis=-1)  # (P, C)
    if loss in ("softmax", "softmax_focal"):
        per_class = (1.0 - jnp.exp(log_p)) ** gamma * -log_p
    else:
        signs = 2.0 * jnp.eye(num_classes) - 1.0  # row c: +1 at c, -1 elsewhere
        x = z[..., None, :] * signs  # (P, c, i): each logit signed towards its binary target
        per_class = jnp.sum(jax.nn.sigmoid(-x) ** gamma * jax.nn.softplus(-x), axis=-1)
    counted = labels != ignore_index
    safe = jnp.where(counted, labels, 0)
    label_weight = jnp.where(counted, weights[safe], 0.0)
    values = label_weight * jnp.take_along_axis(per_class, safe[..., None], axis=-1)[..., 0]
    if reduction == "none":
        return values
    if reduction == "sum":
        return jnp.sum(values)
    denominator = jnp.sum(counted) if reduction == "mean" else jnp.sum(label_weight)
    return jnp.sum(values) / denominator


def reference_of(y, w, loss, gamma, reduction):
    """:func:`reference_loss` of the logits alone, in float64."""
    labels, weights = jnp.asarray(y), jnp.asarray(w, jnp.float64)
    options = {"loss": loss, "gamma": gamma, "reduction": reduction, "ignore_index": IGNORED}
    return lambda q: reference_loss(q.astype(jnp.float64), labels, weights, **options)


@pytest.mark.parametrize(("loss", "gamma"), LOSSES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_reference_loss_equals_the_oracle(loss, gamma, reduction):
    """The hessian test's reference is anchored to the oracle: its values and gradients match."""
    z, y, w = case()
    want_value, want_grad = expected(loss, gamma, reduction, "float64")
    f = reference_of(y, w, loss, gamma, reduction)
    close(f(jnp.asarray(z)), want_value, "float64")
    close(jax.jit(jax.jacrev(f))(jnp.asarray(z)), jacobian_of(want_grad, reduction), "float64")


@pytest.mark.parametrize(
    ("reduction", "dtype"), [("none", "float64"), ("weighted_mean", "float64"), ("mean", "float32")]
)
@pytest.mark.parametrize(("loss", "gamma"), LOSSES)
def test_hessian_equals_the_float64_reference(loss, gamma, reduction, dtype):
    """``jax.hessian`` (forward over reverse) differentiates the core's analytic gradient; it must equal the
    second derivative of the textbook formulas, computed in float64 from the same (rounded) inputs."""
    z, y, w = case(dtype=dtype)
    f = loss_fn(loss, gamma, reduction, y, w)
    got = jax.jit(jax.hessian(f))(jnp.asarray(z, dtype))
    assert got.dtype == jnp.dtype(dtype)
    want = np.asarray(jax.hessian(reference_of(y, w, loss, gamma, reduction))(jnp.asarray(z)))
    scale = float(np.max(np.abs(want)))
    rtol, atol = (1e-9, 1e-12 * scale) if dtype == "float64" else (2e-4, 2e-5 * scale)
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=rtol, atol=atol)
    if reduction != "none":  # symmetric, as a Hessian must be
        flat = np.asarray(got, dtype=np.float64).reshape(z.size, z.size)
        np.testing.assert_allclose(flat, flat.T, rtol=rtol, atol=atol)


@pytest.mark.parametrize(("loss", "gamma"), LOSSES)
def test_hessian_at_exact_zeros_and_ties(loss, gamma):
    """Logits exactly 0 (a zero-initialised head) and exactly tied: the core's elementwise forms branch on the
    sign of a logit, and JAX's derivative of ``|x|`` at 0 is +1, so each branch must take 0 on that side, or the
    Hessian there is finite and wrong (the sigmoid's curvature came out negative)."""
    z = np.array([[0.0, 0.0, 0.0, 0.0], [1.5, 1.5, -2.0, 0.0], [0.0, -3.0, 2.0, 2.0]])
    y, w = np.array([0, 1, 3]), np.array([0.5, 1.0, 2.0, 1.5])
    got = jax.hessian(loss_fn(loss, gamma, "mean", y, w))(jnp.asarray(z))
    want = jax.hessian(reference_of(y, w, loss, gamma, "mean"))(jnp.asarray(z))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-9, atol=1e-12)


def central_hessian(z, t, w, **options):
    """Central differences of the core's analytic gradient (NumPy, float64), for targets ``t`` of ``z``'s shape."""
    step, size = 1e-6, z.size
    want = np.zeros((size, size))
    for k in range(size):
        dz = np.zeros(size)
        dz[k] = step
        grads = [
            cbloss.class_balanced_loss_and_grad(z + s * dz.reshape(z.shape), t, w, **options)[1].reshape(size)
            for s in (1.0, -1.0)
        ]
        want[:, k] = (grads[0] - grads[1]) / (2 * step)
    return want


@pytest.mark.parametrize(("loss", "gamma"), [("sigmoid", None), ("focal", 2.0), ("focal", 0.5)])
def test_multi_hot_hessian_at_zero_logits(loss, gamma):
    """Multi-hot targets at logits exactly 0: each element's curvature, ``w_c / N`` times the binary element's
    second derivative at 0, positive (the loss is convex in each logit)."""
    z, t, w = np.zeros((2, 3)), np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]), np.array([0.5, 1.0, 2.0])
    f = loss_fn(loss, gamma, "mean", t, w, multi_label="class", ignore_index=None)
    got = np.asarray(jax.hessian(f)(jnp.asarray(z))).reshape(6, 6)
    want = central_hessian(z, t, w, loss=loss, gamma=gamma, multi_label="class")
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    assert np.all(np.diag(got) > 0)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_softmax_focal_hessian_at_ties_with_soft_targets(smoothing):
    """Soft targets (and smoothing) take the dense path, which shifts each position by its top logit: by the
    logit at argmax, so that at an exact tie the shift moves with that logit alone."""
    z = np.array([[0.0, 0.0], [1.5, 1.5], [2.0, -1.0]])
    t, w = np.array([[0.5, 0.5], [0.25, 0.75], [1.0, 0.0]]), np.array([1.0, 2.0])
    options = {"loss": "softmax_focal", "gamma": 2.0, "label_smoothing": smoothing}
    f = loss_fn(reduction="mean", y=t, w=w, ignore_index=None, **options)
    got = np.asarray(jax.hessian(f)(jnp.asarray(z))).reshape(6, 6)
    np.testing.assert_allclose(got, central_hessian(z, t, w, **options), rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------------------------------------------------------
# Constants and cost
# ----------------------------------------------------------------------------------------------------------
def test_labels_and_weights_have_zero_tangent_and_cotangent():
    z, _, w = case()
    rng = np.random.default_rng(2)
    t = rng.dirichlet(np.ones(4), size=5)
    s = rng.uniform(0.5, 2.0, 5)
    q, t, w, s = (jnp.asarray(a) for a in (z, t, w, s))

    def f(logits, targets, weights, sample_weight):
        return cj.class_balanced_loss(logits, targets, weights, sample_weight=sample_weight, loss="focal")

    _, tangent = jax.jvp(lambda a, b, c: f(q, a, b, c), (t, w, s), (jnp.ones_like(t), jnp.ones_like(w), s))
    assert float(tangent) == 0.0
    grads = jax.grad(f, argnums=(0, 1, 2, 3))(q, t, w, s)
    assert np.abs(np.asarray(grads[0])).max() > 0
    for constant in grads[1:]:
        assert not np.asarray(constant).any()
    jacobians = jax.jacfwd(f, argnums=(1, 2, 3))(q, t, w, s)
    for constant in jacobians:
        assert not np.asarray(constant).any()


def test_the_gradient_is_built_only_when_the_logits_are_perturbed(monkeypatch):
    """jvp/jacfwd ask the engine for the gradient; perturbing only constants (here the weights) does not."""
    calls = []
    original = cj.evaluate

    def spy(*args, **kwargs):
        calls.append(kwargs["with_grad"])
        return original(*args, **kwargs)

    monkeypatch.setattr(cj, "evaluate", spy)
    z, y, w = case(n=13, c=3)  # shapes no other test compiles, so nothing is cached
    y[2] = 1
    q, w = jnp.asarray(z), jnp.asarray(w)
    jax.jvp(lambda a: cj.class_balanced_loss(a, y, w, loss="sigmoid"), (q,), (jnp.ones_like(q),))
    assert True in calls
    calls.clear()
    jax.jacfwd(lambda a: cj.class_balanced_loss(a, y, w, loss="softmax_focal"))(q)
    assert True in calls
    calls.clear()
    grad = jax.grad(lambda v: cj.class_balanced_loss(q, y, v, loss="focal"))(w)  # weights only: a constant
    assert calls == [False] and not np.asarray(grad).any()
