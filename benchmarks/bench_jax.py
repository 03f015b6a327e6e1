"""JAX cases: cbloss.adapters.jax under jax.jit against optax's own losses, forward + value_and_grad, CPU float32.

Every variant is one jitted ``jax.value_and_grad`` with respect to the logits, taking integer labels, and is
blocked on (``jax.block_until_ready``). The harness writes dense shapes ``(N, C, H, W)``; JAX puts the class
axis last, so they run as ``(N, H, W, C)``. The class-balanced losses carry their weights (a
``ClassBalancedLoss`` pytree passed as a jit argument); the optax baselines are unweighted.

Targets (issue 4): CB softmax <= 1.10x ``optax.softmax_cross_entropy_with_integer_labels``; CB focal <= 1.5x
``optax.sigmoid_binary_cross_entropy`` (with the one-hot target built inside the jitted function from the same
integer labels). CB sigmoid vs the same and CB softmax_focal vs optax softmax CE are informative.
"""

from __future__ import annotations

import numpy as np

from .harness import Case


def _shape(shape: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    """(logits shape with the class axis last, number of classes)."""
    if len(shape) == 2:
        return shape, shape[1]
    n, c, *spatial = shape
    return (n, *spatial, c), c


def cases(shapes: list[tuple[int, ...]], quick: bool) -> list[Case]:
    import jax
    import jax.numpy as jnp
    import optax

    from cbloss.adapters.jax import ClassBalancedLoss

    def timed(fn, *args):
        jitted = jax.jit(jax.value_and_grad(fn))

        def run():
            return jax.block_until_ready(jitted(*args))

        return run

    def softmax_ce(z, y):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(z, y))

    def sigmoid_bce(z, y):
        return jnp.mean(optax.sigmoid_binary_cross_entropy(z, jax.nn.one_hot(y, z.shape[-1], dtype=z.dtype)))

    def cb(z, y, loss_fn):
        return loss_fn(z, y)

    out: list[Case] = []
    for harness_shape in shapes:
        shape, num_classes = _shape(harness_shape)
        rng = np.random.default_rng(0)
        z = jnp.asarray(rng.normal(0.0, 2.0, shape), jnp.float32)
        y = jnp.asarray(rng.integers(0, num_classes, shape[:-1]), jnp.int32)
        counts = np.maximum(1, np.round(1000.0 * 0.01 ** (np.arange(num_classes) / max(1, num_classes - 1))))
        variants = [
            ("CB softmax", "softmax", None, "optax softmax_ce_int_labels", softmax_ce, 1.10),
            ("CB focal", "focal", 2.0, "optax sigmoid_binary_ce", sigmoid_bce, 1.5),
            ("CB sigmoid", "sigmoid", None, "optax sigmoid_binary_ce", sigmoid_bce, None),
            ("CB softmax_focal", "softmax_focal", 2.0, "optax softmax_ce_int_labels", softmax_ce, None),
        ]
        for name, loss, gamma, baseline_name, baseline, target in variants:
            loss_fn = ClassBalancedLoss(counts, 0.999, loss=loss, gamma=gamma)
            out.append(
                Case(
                    framework="jax",
                    name=name,
                    baseline_name=baseline_name,
                    shape=tuple(shape),
                    candidate=timed(cb, z, y, loss_fn),
                    baseline=timed(baseline, z, y),
                    target=target,
                    mode="jit",
                )
            )
    return out
