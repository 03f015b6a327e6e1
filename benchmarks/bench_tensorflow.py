"""TensorFlow: cbloss.adapters.tensorflow (forward + gradient via tf.GradientTape through the core's
analytic gradient) against TensorFlow's own fused losses, float32, under ``tf.function`` and under
``tf.function(jit_compile=True)`` ("xla", TensorFlow's compiled case), on the CPU or with ``--device cuda``/
``gpu`` on ``/GPU:0`` (each call then ends with ``tf.test.experimental.sync_devices()``).

The class axis is last in TensorFlow: the harness's dense shape (N, C, H, W) runs as (N, H, W, C). Baselines:
unweighted ``tf.nn.sparse_softmax_cross_entropy_with_logits`` (mean) for the softmax losses, and
``tf.nn.sigmoid_cross_entropy_with_logits`` on precomputed one-hot targets (summed over classes, mean over
positions) for the sigmoid losses. Targets: CB softmax <= 1.10x, CB focal <= 1.5x.

``memory``: on a GPU, the peak of TensorFlow's GPU allocator (``tf.config.experimental.get_memory_info``)
during one XLA forward + gradient, for every loss with ``label_smoothing`` 0 and 0.1, against TensorFlow's
loss with the same class weights and smoothing. TensorFlow keeps no allocator statistics for the CPU (and does
not expose XLA's buffer assignment), so on the CPU the section is skipped with a note.

Multi-label rows (``multi_label_cases``, ``multi_label_memory``): ``class_balanced_loss(..., loss="sigmoid" or
"focal", multi_label="class")`` on the harness's seeded long-tailed multi-hot float32 targets (class axis last),
against ``tf.nn.sigmoid_cross_entropy_with_logits(t, z) * w`` summed over classes, mean over positions: the same
number as cbloss's ``"mean"`` (docs/conventions.md §6.5), which each case's setup checks at gamma = 0 (value and
gradient, in the case's mode) before it is timed. Goals: CB sigmoid <= 1.10x; CB focal <= 1.5x under
``tf.function`` and <= 1.25x under XLA. The memory rows (GPU only) smooth the baseline's target towards 1/2
inside the function, as cbloss does.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from .harness import (
    LOSSES,
    MEMORY_LABEL_SMOOTHING,
    MULTI_LABEL_COMPILED_TARGETS,
    MULTI_LABEL_LOSSES,
    MULTI_LABEL_TARGETS,
    Case,
    DeviceUnavailable,
    Settings,
    Skipped,
    check_same,
    error_text,
    memory_row,
    multi_hot_targets,
    multi_label_name,
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
MULTI_HOT_BASELINE = "tf.nn.sigmoid_cross_entropy(t) · w"
MEMORY_SKIPPED = (
    "skipped on the CPU: TensorFlow keeps no allocator statistics for the CPU "
    "(tf.config.experimental.get_memory_info supports GPUs only) and does not expose XLA's buffer sizes"
)


def _class_last(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(N, C) stays; (N, C, d1, ...) becomes (N, d1, ..., C)."""
    return shape if len(shape) == 2 else (shape[0], *shape[2:], shape[1])


def _device(settings: Settings) -> str:
    import tensorflow as tf

    if not settings.gpu:
        return "/CPU:0"
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        raise DeviceUnavailable(
            f"--device cuda/gpu: TensorFlow sees no GPU (tensorflow {tf.__version__}, built with CUDA: "
            f"{tf.test.is_built_with_cuda()}; tf.config.list_physical_devices('GPU') is empty)"
        )
    try:  # the GPU is shared with the other frameworks in this process: take memory as needed, not all of it
        tf.config.experimental.set_memory_growth(gpus[0], True)
    except RuntimeError:  # already initialised (an earlier call): growth is set, or was not ours to set
        pass
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


def _multi_hot_sigmoid_ce(label_smoothing: float = 0.0):
    """TensorFlow's sigmoid cross-entropy on multi-hot targets with class weights ``w``, summed over classes,
    mean over positions: cbloss's ``multi_label="class"`` at gamma = 0 with ``reduction="mean"``
    (docs/conventions.md §6.5). Label smoothing moves the target towards 1/2 inside the function."""
    import tensorflow as tf

    def sigmoid_ce(z, t, w):
        if label_smoothing:
            t = t * (1 - label_smoothing) + label_smoothing / 2
        per = tf.nn.sigmoid_cross_entropy_with_logits(labels=t, logits=z)
        return tf.reduce_mean(tf.reduce_sum(w * per, axis=-1))

    return sigmoid_ce


def _with_gradient(loss_fn, jit: bool):
    """``tf.function(jit_compile=jit)`` of ``(z, *rest) -> (loss_fn(z, *rest), d loss / d z)``."""
    import tensorflow as tf

    @tf.function(jit_compile=jit)
    def step(z, *rest):
        with tf.GradientTape() as tape:
            tape.watch(z)
            loss = loss_fn(z, *rest)
        return loss, tape.gradient(loss, z)

    return step


def multi_label_cases(shapes: list[tuple[int, ...]], settings: Settings) -> list[Case]:
    import tensorflow as tf

    import cbloss
    from cbloss.adapters.tensorflow import class_balanced_loss

    scope, sync = _placed(settings)

    def cb(options: dict):
        def loss(z, t, w):
            return class_balanced_loss(z, t, w, validate=False, multi_label="class", **options)

        return loss

    def same_as_baseline(what, candidate, baseline, z, t, w):
        def check() -> None:
            with scope():
                ours, theirs = candidate(z, t, w), baseline(z, t, w)
            check_same(what, tuple(a.numpy() for a in ours), tuple(a.numpy() for a in theirs))

        return check

    out: list[Case] = []
    for harness_shape in shapes:
        shape = _class_last(tuple(harness_shape))
        num_classes = shape[-1]
        rng = np.random.default_rng(0)
        with scope():
            logits = tf.constant(rng.normal(size=shape).astype(np.float32))
            targets = tf.constant(multi_hot_targets(shape))
            weights = tf.constant(cbloss.class_balanced_weights(_counts(num_classes), 0.999), tf.float32)
        for mode, jit in MODES.items():
            baseline = _with_gradient(_multi_hot_sigmoid_ce(), jit)
            goals = MULTI_LABEL_COMPILED_TARGETS if jit else MULTI_LABEL_TARGETS
            for loss in MULTI_LABEL_LOSSES:
                candidate = _with_gradient(cb(dict(loss=loss)), jit)
                at_zero = candidate if loss == "sigmoid" else _with_gradient(cb(dict(loss=loss, gamma=0.0)), jit)
                what = f"{multi_label_name(loss)} {shape} {mode}"
                out.append(
                    Case(
                        framework="tensorflow",
                        name=multi_label_name(loss),
                        baseline_name=MULTI_HOT_BASELINE,
                        shape=shape,
                        candidate=_call(scope, sync, candidate, logits, targets, weights),
                        baseline=_call(scope, sync, baseline, logits, targets, weights),
                        target=goals[loss],
                        mode=mode,
                        setup=same_as_baseline(what, at_zero, baseline, logits, targets, weights),
                    )
                )
    return out


def _peak_bytes(settings: Settings):
    """``peak_bytes(fn)``: the GPU allocator's peak during a second call of ``fn``, beyond what was allocated."""
    import tensorflow as tf

    gpu = _device(settings).lstrip("/")

    def peak_bytes(fn) -> int:
        fn()  # warm up: tracing and compilation do not count
        tf.config.experimental.reset_memory_stats(gpu)
        before = tf.config.experimental.get_memory_info(gpu)["current"]
        fn()
        return tf.config.experimental.get_memory_info(gpu)["peak"] - before

    return peak_bytes


def memory(shapes: list[tuple[int, ...]], settings: Settings) -> list[dict]:
    if not settings.gpu:
        raise Skipped(MEMORY_SKIPPED)
    import tensorflow as tf

    import cbloss
    from cbloss.adapters.tensorflow import class_balanced_loss

    scope, sync = _placed(settings)
    peak_bytes = _peak_bytes(settings)

    def with_gradient(loss_fn):
        return _with_gradient(loss_fn, jit=True)

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


def multi_label_memory(shapes: list[tuple[int, ...]], settings: Settings) -> list[dict]:
    if not settings.gpu:
        raise Skipped(MEMORY_SKIPPED)
    import tensorflow as tf

    import cbloss
    from cbloss.adapters.tensorflow import class_balanced_loss

    scope, sync = _placed(settings)
    peak_bytes = _peak_bytes(settings)
    method = "tf.config.experimental.get_memory_info peak (XLA)"
    rows = []
    for harness_shape in shapes:
        shape = _class_last(tuple(harness_shape))
        num_classes = shape[-1]
        with scope():
            z = tf.constant(np.random.default_rng(0).normal(size=shape).astype(np.float32))
            t = tf.constant(multi_hot_targets(shape))
            w = tf.constant(cbloss.class_balanced_weights(_counts(num_classes), 0.999), tf.float32)
        unit = int(np.prod(shape)) * 4
        for ls in MEMORY_LABEL_SMOOTHING:
            theirs, baseline_failure = None, None
            try:
                theirs = peak_bytes(_call(scope, sync, _with_gradient(_multi_hot_sigmoid_ce(ls), True), z, t, w))
            except Exception as failure:
                baseline_failure = "baseline: " + error_text(failure)
            for loss in MULTI_LABEL_LOSSES:
                ours, problem = None, baseline_failure

                def candidate(z, t, w, loss=loss, ls=ls):
                    return class_balanced_loss(
                        z, t, w, validate=False, loss=loss, multi_label="class", label_smoothing=ls
                    )

                try:
                    ours = peak_bytes(_call(scope, sync, _with_gradient(candidate, True), z, t, w))
                except Exception as failure:
                    problem = error_text(failure)
                name = multi_label_name(loss)
                rows.append(
                    memory_row("tensorflow", name, MULTI_HOT_BASELINE, shape, ls, method, unit, ours, theirs, problem)
                )
    return rows
