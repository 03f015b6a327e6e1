"""TensorFlow: cbloss.adapters.tensorflow (forward + gradient via tf.GradientTape through the core's
analytic gradient) against TensorFlow's own fused losses, CPU float32, under ``tf.function`` and under
``tf.function(jit_compile=True)`` ("xla").

The class axis is last in TensorFlow: the harness's dense shape (N, C, H, W) runs as (N, H, W, C). Baselines:
unweighted ``tf.nn.sparse_softmax_cross_entropy_with_logits`` (mean) for the softmax losses, and
``tf.nn.sigmoid_cross_entropy_with_logits`` on precomputed one-hot targets (summed over classes, mean over
positions) for the sigmoid losses. Targets (from the issue): CB softmax <= 1.10x, CB focal <= 1.5x.
"""

from __future__ import annotations

import os

import numpy as np

from .harness import Case

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODES = {"tf.function": False, "xla": True}
# (name, cbloss options, baseline, target)
LOSSES = [
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


def cases(shapes: list[tuple[int, ...]], quick: bool) -> list[Case]:
    import tensorflow as tf

    import cbloss
    from cbloss.adapters.tensorflow import class_balanced_loss

    out: list[Case] = []
    for harness_shape in shapes:
        shape = _class_last(tuple(harness_shape))
        num_classes = shape[-1]
        rng = np.random.default_rng(0)
        logits = tf.constant(rng.normal(size=shape).astype(np.float32))
        labels = tf.constant(rng.integers(0, num_classes, size=shape[:-1]).astype(np.int32))
        onehot = tf.one_hot(labels, num_classes, dtype=tf.float32)
        counts = np.maximum(1, (1000 * np.exp(-np.arange(num_classes) / max(1, num_classes / 5)))).astype(int)
        weights = tf.constant(cbloss.class_balanced_weights(counts, 0.999), tf.float32)

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
            for name, options, kind, target in LOSSES:
                candidate = make_candidate(options, jit)
                baseline = baselines[kind]
                out.append(
                    Case(
                        framework="tensorflow",
                        name=name,
                        baseline_name=BASELINE_NAMES[kind],
                        shape=shape,
                        candidate=lambda f=candidate, z=logits, y=labels: f(z, y)[1],
                        baseline=lambda f=baseline, z=logits, y=labels, t=onehot: f(z, y, t)[1],
                        target=target,
                        mode=mode,
                    )
                )
    return out
