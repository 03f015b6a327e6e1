"""TensorFlow: cbloss.adapters.tensorflow (forward + gradient via tf.GradientTape through the core's
analytic gradient) against TensorFlow's own fused losses, float32, under ``tf.function`` and under
``tf.function(jit_compile=True)`` ("xla", TensorFlow's compiled case), on the CPU or with ``--device cuda``/
``gpu`` on ``/GPU:0`` (each call then ends with ``tf.test.experimental.sync_devices()``).

The class axis is last in TensorFlow: the harness's dense shape (N, C, H, W) runs as (N, H, W, C). Baselines:
unweighted ``tf.nn.sparse_softmax_cross_entropy_with_logits`` (mean) for the softmax losses, and
``tf.nn.sigmoid_cross_entropy_with_logits`` on precomputed one-hot targets (summed over classes, mean over
positions) for the sigmoid losses. Targets (from the issue): CB softmax <= 1.10x, CB focal <= 1.5x.

``memory``: on a GPU, the peak of TensorFlow's GPU allocator (``tf.config.experimental.get_memory_info``)
during one XLA forward + gradient, for every loss with ``label_smoothing`` 0 and 0.1, against TensorFlow's
loss with the same class weights and smoothing. TensorFlow keeps no allocator statistics for the CPU (and does
not expose XLA's buffer assignment), so on the CPU the section is skipped with a note.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from .harness import (
    LOSSES,
    MEMORY_LABEL_SMOOTHING,
    Case,
    DeviceUnavailable,
    Settings,
    Skipped,
    error_text,
    memory_row,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODES = {"tf.function": False, "xla": True}
# (name, cbloss options, baseline, target)
VARIANTS = [
    ("CB softmax", dict(loss="softmax"), "softmax", 1.10),
    ("CB focal", dict(loss="focal", gamma=2.0), "sigmoid", 1.5),
    ("CB sigmoid", dict(loss="sigmoid"), "sigmoid", None),
    ("CB softmax_focal", dict(loss="softmax_focal", gamma=2.0), "softmax", None),
]
BASELINE_NAMES = {
    "softmax": "tf.nn.sparse_softmax_cross_entropy",
    "sigmoid": "tf.nn.sigmoid_cross_entropy",
}


def _class_last(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(N, C) stays; (N, C, d1, ...) becomes (N, d1, ..., C)."""
    return shape if len(shape) == 2 else (shape[0], *shape[2:], shape[1])


def _device(settings: Settings) -> str:
    import tensorflow as tf

    if not settings.gpu:
        return "/CPU:0"
    if not tf.config.list_physical_devices("GPU"):
        raise DeviceUnavailable(
            f"--device cuda/gpu: TensorFlow sees no GPU (tensorflow {tf.__version__}, built with CUDA: "
            f"{tf.test.is_built_with_cuda()}; tf.config.list_physical_devices('GPU') is empty)"
        )
    return "/GPU:0"


def device(settings: Settings) -> str:
    return _device(settings)


def threads(settings: Settings) -> str:
    import tensorflow as tf

    if settings.gpu:
        return "GPU"
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    return f"intra-op {intra or 'default'}, inter-op {inter or 'default'} (0 = TensorFlow's default, all cores)"


def _placed(settings: Settings):
    """A context placing ops on the benchmark's device (only needed where a GPU is visible), and a sync."""
    import tensorflow as tf

    name = _device(settings)
    needs_scope = bool(tf.config.list_physical_devices("GPU"))

    def scope():
        return tf.device(name) if needs_scope else contextlib.nullcontext()

    sync = tf.test.experimental.sync_devices if settings.gpu else None
    return scope, sync


def _call(scope, sync, fn, *args):
    def run():
        with scope():
            result = fn(*args)[1]
        if sync is not None:
            sync()
        return result

    return run


def _counts(num_classes: int) -> np.ndarray:
    return np.maximum(1, (1000 * np.exp(-np.arange(num_classes) / max(1, num_classes / 5)))).astype(int)


def cases(shapes: list[tuple[int, ...]], settings: Settings) -> list[Case]:
    import tensorflow as tf

    import cbloss
    from cbloss.adapters.tensorflow import class_balanced_loss

    scope, sync = _placed(settings)
    out: list[Case] = []
    for harness_shape in shapes:
        shape = _class_last(tuple(harness_shape))
        num_classes = shape[-1]
        rng = np.random.default_rng(0)
        with scope():
            logits = tf.constant(rng.normal(size=shape).astype(np.float32))
            labels = tf.constant(rng.integers(0, num_classes, size=shape[:-1]).astype(np.int32))
            onehot = tf.one_hot(labels, num_classes, dtype=tf.float32)
            weights = tf.constant(cbloss.class_balanced_weights(_counts(num_classes), 0.999), tf.float32)

        def make_candidate(options: dict, jit: bool, weights=weights):
            @tf.function(jit_compile=jit)
            def step(z, y):
                with tf.GradientTape() as tape:
                    tape.watch(z)
                    loss = class_balanced_loss(z, y, weights, validate=False, **options)
                return loss, tape.gradient(loss, z)

            return step

        def make_baseline(kind: str, jit: bool):
            @tf.function(jit_compile=jit)
            def step(z, y, t):
                with tf.GradientTape() as tape:
                    tape.watch(z)
                    if kind == "softmax":
                        per = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=z)
                    else:
                        per = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=t, logits=z), axis=-1)
                    loss = tf.reduce_mean(per)
                return loss, tape.gradient(loss, z)

            return step

        for mode, jit in MODES.items():
            baselines = {kind: make_baseline(kind, jit) for kind in BASELINE_NAMES}
            for name, options, kind, target in VARIANTS:
                out.append(
                    Case(
                        framework="tensorflow",
                        name=name,
                        baseline_name=BASELINE_NAMES[kind],
                        shape=shape,
                        candidate=_call(scope, sync, make_candidate(options, jit), logits, labels),
                        baseline=_call(scope, sync, baselines[kind], logits, labels, onehot),
                        target=target,
                        mode=mode,
                    )
                )
    return out


def memory(shapes: list[tuple[int, ...]], settings: Settings) -> list[dict]:
    if not settings.gpu:
        raise Skipped(
            "skipped on the CPU: TensorFlow keeps no allocator statistics for the CPU "
            "(tf.config.experimental.get_memory_info supports GPUs only) and does not expose XLA's buffer sizes"
        )
    import tensorflow as tf

    import cbloss
    from cbloss.adapters.tensorflow import class_balanced_loss

    scope, sync = _placed(settings)
    gpu = _device(settings).lstrip("/")

    def peak_bytes(fn) -> int:
        fn()  # warm up: tracing and compilation do not count
        tf.config.experimental.reset_memory_stats(gpu)
        before = tf.config.experimental.get_memory_info(gpu)["current"]
        fn()
        return tf.config.experimental.get_memory_info(gpu)["peak"] - before

    def with_gradient(loss_fn):
        @tf.function(jit_compile=True)
        def step(z, y):
            with tf.GradientTape() as tape:
                tape.watch(z)
                loss = loss_fn(z, y)
            return loss, tape.gradient(loss, z)

        return step

    rows = []
    for harness_shape in shapes:
        shape = _class_last(tuple(harness_shape))
        num_classes = shape[-1]
        rng = np.random.default_rng(0)
        with scope():
            z = tf.constant(rng.normal(size=shape).astype(np.float32))
            y = tf.constant(rng.integers(0, num_classes, size=shape[:-1]).astype(np.int32))
            w = tf.constant(cbloss.class_balanced_weights(_counts(num_classes), 0.999), tf.float32)
        unit = int(np.prod(shape)) * 4
        for ls in MEMORY_LABEL_SMOOTHING:

            def target(y, num_classes=num_classes, ls=ls):
                return tf.one_hot(y, num_classes) * (1 - ls) + ls / num_classes

            def softmax_ce(z, y, ls=ls, target=target, w=w):
                if ls:
                    per = tf.nn.softmax_cross_entropy_with_logits(labels=target(y), logits=z)
                else:
                    per = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=z)
                return tf.reduce_mean(tf.gather(w, y) * per)

            def sigmoid_ce(z, y, target=target, w=w):
                per = tf.nn.sigmoid_cross_entropy_with_logits(labels=target(y), logits=z)
                return tf.reduce_mean(tf.reduce_sum(w * per, axis=-1))

            natives = {"tf.nn softmax_ce · w[y]": softmax_ce, "tf.nn sigmoid_ce · w": sigmoid_ce}
            theirs: dict[str, int | None] = {}
            errors: dict[str, str] = {}
            for name, fn in natives.items():
                try:
                    theirs[name] = peak_bytes(_call(scope, sync, with_gradient(fn), z, y))
                except Exception as error:
                    theirs[name], errors[name] = None, "baseline: " + error_text(error)
            for loss in LOSSES:
                native = "tf.nn softmax_ce · w[y]" if loss.startswith("softmax") else "tf.nn sigmoid_ce · w"
                ours, error = None, errors.get(native)

                def candidate(z, y, loss=loss, ls=ls, w=w):
                    return class_balanced_loss(z, y, w, loss=loss, label_smoothing=ls, validate=False)

                try:
                    ours = peak_bytes(_call(scope, sync, with_gradient(candidate), z, y))
                except Exception as exc:
                    error = error_text(exc)
                method = "tf.config.experimental.get_memory_info peak (XLA)"
                rows.append(
                    memory_row("tensorflow", f"CB {loss}", native, shape, ls, method, unit, ours, theirs[native], error)
                )
    return rows
