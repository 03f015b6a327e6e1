"""JAX cases: cbloss.adapters.jax under jax.jit against optax's own losses, forward + value_and_grad, float32,
on the CPU or with ``--device cuda``/``gpu`` on JAX's first GPU (the arrays are placed there).

Every variant is one jitted ``jax.value_and_grad`` with respect to the logits, taking integer labels, and is
blocked on (``jax.block_until_ready``). The harness writes dense shapes ``(N, C, H, W)``; JAX puts the class
axis last, so they run as ``(N, H, W, C)``. The class-balanced losses carry their weights (a
``ClassBalancedLoss`` pytree passed as a jit argument); the optax baselines are unweighted. ``jit`` is JAX's
compiled case: there is no separate compile section.

Targets: CB softmax <= 1.10x ``optax.softmax_cross_entropy_with_integer_labels``; CB focal <= 1.5x
``optax.sigmoid_binary_cross_entropy`` (with the one-hot target built inside the jitted function from the same
integer labels). CB sigmoid vs the same and CB softmax_focal vs optax softmax CE are informative.

``memory``: XLA's own accounting of the compiled forward + gradient, ``memory_analysis()`` of the compiled
executable: temporaries plus outputs (the gradient and the loss), arguments excluded, for every loss with
``label_smoothing`` 0 and 0.1, against the optax loss with the same class weights (``w[y] *`` the softmax
cross-entropy, ``w *`` the sigmoid one, summed over classes) and the same smoothing (a smoothed one-hot target,
built inside the function).

Multi-label rows (``multi_label_cases``, ``multi_label_memory``): ``ClassBalancedLoss(..., loss="sigmoid" or
"focal", multi_label="class")`` on the harness's seeded long-tailed multi-hot float32 targets (class axis last),
against ``optax.sigmoid_binary_cross_entropy(z, t) * w`` summed over classes, mean over positions: the same
number as cbloss's ``"mean"`` (docs/conventions.md §6.5), which each case's setup checks at gamma = 0 (value and
gradient, jitted) before it is timed. ``jit`` is the compiled mode: goals CB sigmoid <= 1.10x, CB focal <= 1.25x.
The memory rows smooth the baseline's target towards 1/2 inside the function, as cbloss does.
"""

from __future__ import annotations

import numpy as np

from .harness import (
    LOSSES,
    MEMORY_LABEL_SMOOTHING,
    MULTI_LABEL_COMPILED_TARGETS,
    MULTI_LABEL_LOSSES,
    Case,
    DeviceUnavailable,
    Settings,
    check_same,
    error_text,
    memory_row,
    multi_hot_targets,
    multi_label_name,
)

MULTI_HOT_BASELINE = "optax sigmoid_binary_ce(t) · w"


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


def _multi_label_data(harness_shape, dev):
    """Logits as in the single-label rows and the harness's multi-hot targets, class axis last."""
    import jax

    shape, num_classes, z, _ = _data(harness_shape, dev)
    return shape, num_classes, z, jax.device_put(multi_hot_targets(shape), dev)


def _multi_hot_bce(label_smoothing: float = 0.0):
    """optax's sigmoid BCE on multi-hot targets with class weights ``w``, summed over classes, mean over
    positions: cbloss's ``multi_label="class"`` at gamma = 0 with ``reduction="mean"`` (docs/conventions.md
    §6.5). Label smoothing moves the target towards 1/2 inside the function, as cbloss does."""
    import jax.numpy as jnp
    import optax

    def bce(z, t, w):
        if label_smoothing:
            t = t * (1 - label_smoothing) + label_smoothing / 2
        return jnp.mean(jnp.sum(w * optax.sigmoid_binary_cross_entropy(z, t), axis=-1))

    return bce


def multi_label_cases(shapes: list[tuple[int, ...]], settings: Settings) -> list[Case]:
    import jax

    from cbloss.adapters.jax import ClassBalancedLoss

    dev = _device(settings)
    baseline = jax.jit(jax.value_and_grad(_multi_hot_bce()))  # compiles once per shape

    def cb(z, t, loss_fn):
        return loss_fn(z, t)

    candidate = jax.jit(jax.value_and_grad(cb))  # the loss pytree is an argument: one function for every case

    def timed(fn, *args):
        def run():
            return jax.block_until_ready(fn(*args))

        return run

    def same_as_baseline(what, z, t, counts, loss, weights):
        def check() -> None:
            at_zero = jax.device_put(ClassBalancedLoss(counts, 0.999, loss=loss, gamma=0.0, multi_label="class"), dev)
            check_same(what, jax.device_get(candidate(z, t, at_zero)), jax.device_get(baseline(z, t, weights)))

        return check

    out: list[Case] = []
    for loss in MULTI_LABEL_LOSSES:
        for harness_shape in shapes:
            shape, num_classes, z, t = _multi_label_data(harness_shape, dev)
            counts = _counts(num_classes)
            loss_fn = jax.device_put(ClassBalancedLoss(counts, 0.999, loss=loss, multi_label="class"), dev)
            weights = jax.device_put(loss_fn.weights, dev)
            out.append(
                Case(
                    framework="jax",
                    name=multi_label_name(loss),
                    baseline_name=MULTI_HOT_BASELINE,
                    shape=tuple(shape),
                    candidate=timed(candidate, z, t, loss_fn),
                    baseline=timed(baseline, z, t, weights),
                    target=MULTI_LABEL_COMPILED_TARGETS[loss],
                    mode="jit",
                    setup=same_as_baseline(f"{multi_label_name(loss)} {shape}", z, t, counts, loss, weights),
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


def multi_label_memory(shapes: list[tuple[int, ...]], settings: Settings) -> list[dict]:
    import jax

    from cbloss.adapters.jax import ClassBalancedLoss

    dev = _device(settings)
    method = "XLA memory_analysis: temp + output"
    rows = []
    for harness_shape in shapes:
        shape, num_classes, z, t = _multi_label_data(harness_shape, dev)
        counts = _counts(num_classes)
        weights = jax.device_put(ClassBalancedLoss(counts, 0.999).weights, dev)
        unit = int(z.size * z.dtype.itemsize)
        for ls in MEMORY_LABEL_SMOOTHING:
            theirs, baseline_failure = None, None
            try:
                theirs = compiled_bytes(_multi_hot_bce(ls), z, t, weights)
            except Exception as failure:
                baseline_failure = "baseline: " + error_text(failure)
            for loss in MULTI_LABEL_LOSSES:
                ours, problem = None, baseline_failure
                try:
                    loss_fn = ClassBalancedLoss(counts, 0.999, loss=loss, multi_label="class", label_smoothing=ls)
                    ours = compiled_bytes(lambda z, t, f: f(z, t), z, t, jax.device_put(loss_fn, dev))
                except Exception as failure:
                    problem = error_text(failure)
                name = multi_label_name(loss)
                rows.append(memory_row("jax", name, MULTI_HOT_BASELINE, shape, ls, method, unit, ours, theirs, problem))
    return rows
