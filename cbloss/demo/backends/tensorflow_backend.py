"""TensorFlow: ``cbloss.adapters.tensorflow.class_balanced_loss`` (the core's analytic gradient as a
``tf.custom_gradient``), ``tf.GradientTape`` through the tiny model and the same Adam update as the other
backends (bias-corrected, eps outside the square root), the training loop one ``tf.function``."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no C++ start-up banners in the demo's output (user can override)

import numpy as np
import tensorflow as tf

from cbloss.adapters.tensorflow import class_balanced_loss

from . import ADAM_BETAS, ADAM_EPS

NAME = "tensorflow"
_TRAINERS: dict = {}


def _forward(params, x):
    h = x
    n_layers = len(params) // 2
    for i in range(n_layers):
        h = tf.matmul(h, params[2 * i]) + params[2 * i + 1]
        if i < n_layers - 1:
            h = tf.nn.relu(h)
    return h


def _trainer(loss, gamma, steps, lr, weights_rank, multi_label):
    # One tf.function per weights rank (None: unweighted, 1: a vector, 2: a per-step table): reduce_retracing
    # would otherwise relax a vector and a table to an unknown rank.
    key = (loss, gamma, steps, lr, weights_rank, multi_label)
    weighted = weights_rank is not None
    if key not in _TRAINERS:
        b1, b2 = ADAM_BETAS

        @tf.function(reduce_retracing=True)
        def train(params, x, y, weights):
            params = [tf.identity(p) for p in params]
            first = [tf.zeros_like(p) for p in params]
            second = [tf.zeros_like(p) for p in params]
            per_step = weights_rank == 2  # a (steps, C) table, indexed in the graph: row t weighs step t
            for t in tf.range(1, steps + 1):
                w = (weights[t - 1] if per_step else weights) if weighted else None
                with tf.GradientTape() as tape:
                    tape.watch(params)
                    logits = _forward(params, x)
                    value = class_balanced_loss(
                        logits, y, w, loss=loss, gamma=gamma, reduction="mean", multi_label=multi_label
                    )
                grads = tape.gradient(value, params)
                tf_t = tf.cast(t, tf.float32)
                scale = lr * tf.sqrt(1 - b2**tf_t) / (1 - b1**tf_t)
                eps = ADAM_EPS * tf.sqrt(1 - b2**tf_t)
                new_params, new_first, new_second = [], [], []
                for p, g, m, v in zip(params, grads, first, second, strict=True):
                    m = b1 * m + (1 - b1) * g
                    v = b2 * v + (1 - b2) * g * g
                    new_params.append(p - scale * m / (tf.sqrt(v) + eps))
                    new_first.append(m)
                    new_second.append(v)
                params, first, second = new_params, new_first, new_second
            return params

        _TRAINERS[key] = train
    return _TRAINERS[key]


def fit(layers, x, y, weights, *, loss, gamma, steps, lr, multi_label=None):
    params = [tf.constant(p, dtype=tf.float32) for layer in layers for p in layer]
    # The weights (a (C,) vector or a (steps, C) table) are an argument of the traced loop: new values, such as
    # another split's or a schedule's, reuse the trace.
    w = tf.constant(np.ones(1, np.float32) if weights is None else np.asarray(weights, dtype=np.float32))
    train = _trainer(loss, gamma, steps, lr, None if weights is None else np.ndim(weights), multi_label)
    labels = tf.constant(y, tf.float32 if multi_label else tf.int64)
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")  # one trace per (model, split size, loss): expected here, not worth a warning
    try:
        out = train(params, tf.constant(x, tf.float32), labels, w)
    finally:
        logger.setLevel(level)
    return [(out[2 * i].numpy(), out[2 * i + 1].numpy()) for i in range(len(layers))]
