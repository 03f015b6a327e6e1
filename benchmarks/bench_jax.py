"""JAX cases: cbloss.adapters.jax under jax.jit against optax's own losses, forward + value_and_grad, float32,
on the CPU or with ``--device cuda``/``gpu`` on JAX's first GPU (the arrays are placed there).

Every variant is one jitted ``jax.value_and_grad`` with respect to the logits, taking integer labels, and is
blocked on (``jax.block_until_ready``). The harness writes dense shapes ``(N, C, H, W)``; JAX puts the class
axis last, so they run as ``(N, H, W, C)``. The class-balanced losses carry their weights (a
``ClassBalancedLoss`` pytree passed as a jit argument); the optax baselines are unweighted. ``jit`` is JAX's
compiled case: there is no separate compile section.

Targets (issue 4): CB softmax <= 1.10x ``optax.softmax_cross_entropy_with_integer_labels``; CB focal <= 1.5x
``optax.sigmoid_binary_cross_entropy`` (with the one-hot target built inside the jitted function from the same
integer labels). CB sigmoid vs the same and CB softmax_focal vs optax softmax CE are informative.

``memory``: XLA's own accounting of the compiled forward + gradient, ``memory_analysis()`` of the compiled
executable: temporaries plus outputs (the gradient and the loss), arguments excluded, for every loss with
``label_smoothing`` 0 and 0.1, against the optax loss with the same class weights (``w[y] *`` the softmax
cross-entropy, ``w *`` the sigmoid one, summed over classes) and the same smoothing (a smoothed one-hot target,
built inside the function).
"""

from __future__ import annotations

import numpy as np

from .harness import LOSSES, MEMORY_LABEL_SMOOTHING, Case, DeviceUnavailable, Settings, error_text, memory_row


def _shape(shape: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    """(logits shape with the class axis last, number of classes)."""
    if len(shape) == 2:
        return shape, shape[1]
    n, c, *spatial = shape
    return (n, *spatial, c), c


def _device(settings: Settings):
    import jax

    if not settings.gpu:
        return jax.devices("cpu")[0]
    try:
        return jax.devices("gpu")[0]
    except RuntimeError as error:
        raise DeviceUnavailable(
            f"--device cuda/gpu: JAX sees no GPU (jax {jax.__version__}, devices {jax.devices()}; "
            f"a CUDA build is `jax[cuda12]`): {error}"
        ) from None


def device(settings: Settings) -> str:
    dev = _device(settings)
    return f"{dev.platform} ({getattr(dev, 'device_kind', dev)})"


def threads(settings: Settings) -> str:
    return "GPU" if settings.gpu else "XLA CPU default (its own thread pool over all cores)"


def _counts(num_classes: int) -> np.ndarray:
    return np.maximum(1, np.round(1000.0 * 0.01 ** (np.arange(num_classes) / max(1, num_classes - 1))))


def _data(harness_shape, dev):
    import jax

    shape, num_classes = _shape(tuple(harness_shape))
    rng = np.random.default_rng(0)
    z = jax.device_put(rng.normal(0.0, 2.0, shape).astype(np.float32), dev)
    y = jax.device_put(rng.integers(0, num_classes, shape[:-1]).astype(np.int32), dev)
    return shape, num_classes, z, y


def cases(shapes: list[tuple[int, ...]], settings: Settings) -> list[Case]:
    import jax
    import jax.numpy as jnp
    import optax

    from cbloss.adapters.jax import ClassBalancedLoss

    dev = _device(settings)

    jitted_baselines = {}  # one jitted function per baseline: it compiles once per shape, not per case

    def timed(fn, *args):
        if fn in (softmax_ce, sigmoid_bce):
            jitted = jitted_baselines.setdefault(fn, jax.jit(jax.value_and_grad(fn)))
        else:
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
        shape, num_classes, z, y = _data(harness_shape, dev)
        counts = _counts(num_classes)
        variants = [
            ("CB softmax", "softmax", None, "optax softmax_ce_int_labels", softmax_ce, 1.10),
            ("CB focal", "focal", 2.0, "optax sigmoid_binary_ce", sigmoid_bce, 1.5),
            ("CB sigmoid", "sigmoid", None, "optax sigmoid_binary_ce", sigmoid_bce, None),
            ("CB softmax_focal", "softmax_focal", 2.0, "optax softmax_ce_int_labels", softmax_ce, None),
        ]
        for name, loss, gamma, baseline_name, baseline, target in variants:
            loss_fn = jax.device_put(ClassBalancedLoss(counts, 0.999, loss=loss, gamma=gamma), dev)
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


def compiled_bytes(fn, *args) -> int:
    """Temporaries + outputs (less aliased buffers) of ``jit(value_and_grad(fn))``'s compiled executable."""
    import jax

    stats = jax.jit(jax.value_and_grad(fn)).lower(*args).compile().memory_analysis()
    if stats is None:
        raise RuntimeError("memory_analysis() is not available on this backend")
    return int(stats.temp_size_in_bytes + stats.output_size_in_bytes - stats.alias_size_in_bytes)


def memory(shapes: list[tuple[int, ...]], settings: Settings) -> list[dict]:
    import jax
    import jax.numpy as jnp
    import optax

    from cbloss.adapters.jax import ClassBalancedLoss

    dev = _device(settings)
    method = "XLA memory_analysis: temp + output"
    rows = []
    for harness_shape in shapes:
        shape, num_classes, z, y = _data(harness_shape, dev)
        counts = _counts(num_classes)
        weights = jax.device_put(ClassBalancedLoss(counts, 0.999).weights, dev)
        unit = int(z.size * z.dtype.itemsize)
        for ls in MEMORY_LABEL_SMOOTHING:

            def target(y, num_classes=num_classes, ls=ls):
                return optax.smooth_labels(jax.nn.one_hot(y, num_classes, dtype=jnp.float32), ls)

            def softmax_ce(z, y, w, ls=ls, target=target):
                if ls:
                    per = optax.softmax_cross_entropy(z, target(y))
                else:
                    per = optax.softmax_cross_entropy_with_integer_labels(z, y)
                return jnp.mean(w[y] * per)

            def sigmoid_bce(z, y, w, target=target):
                return jnp.mean(jnp.sum(w * optax.sigmoid_binary_cross_entropy(z, target(y)), axis=-1))

            natives = {"optax softmax_ce · w[y]": softmax_ce, "optax sigmoid_binary_ce · w": sigmoid_bce}
            theirs: dict[str, int | None] = {}
            errors: dict[str, str] = {}
            for name, fn in natives.items():
                try:
                    theirs[name] = compiled_bytes(fn, z, y, weights)
                except Exception as error:
                    theirs[name], errors[name] = None, "baseline: " + error_text(error)
            for loss in LOSSES:
                native = "optax softmax_ce · w[y]" if loss.startswith("softmax") else "optax sigmoid_binary_ce · w"
                ours, error = None, errors.get(native)
                try:
                    loss_fn = jax.device_put(ClassBalancedLoss(counts, 0.999, loss=loss, label_smoothing=ls), dev)
                    ours = compiled_bytes(lambda z, y, f: f(z, y), z, y, loss_fn)
                except Exception as exc:
                    error = error_text(exc)
                rows.append(
                    memory_row("jax", f"CB {loss}", native, shape, ls, method, unit, ours, theirs[native], error)
                )
    return rows
