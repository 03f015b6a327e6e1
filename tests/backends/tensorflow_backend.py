"""The TensorFlow adapter: ``cbloss.adapters.tensorflow.class_balanced_loss`` on tf.Tensors, differentiated with
``tf.GradientTape`` through the ``tf.custom_gradient`` it registers (eagerly: every call of the suite has its own
shapes and options, so a ``tf.function`` would retrace each time; tests/tensorflow checks that tf.function and
XLA give the eager results). The class axis is last, as in Keras."""

from __future__ import annotations

import os

import numpy as np

from . import Backend


class TensorFlowBackend(Backend):
    name = "tensorflow"
    requires = ("tensorflow",)
    low_precision = ("float16", "bfloat16")

    def loss_and_grad(self, logits, labels, weights, *, dtype, cotangent, options):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        from cbloss.adapters.tensorflow import class_balanced_loss

        tf_dtype = tf.as_dtype(dtype)
        z = tf.cast(tf.constant(logits), tf_dtype)  # via float64: exact for every target dtype
        soft = labels.dtype.kind == "f"
        y = tf.cast(tf.constant(labels), tf_dtype) if soft else tf.constant(labels)
        w = None if weights is None else tf.constant(weights)
        with tf.GradientTape() as tape:
            tape.watch(z)
            loss = class_balanced_loss(z, y, w, **options)
            total = tf.reduce_sum(tf.cast(loss, tf.float64) * tf.constant(cotangent, tf.float64))
        grad = tape.gradient(total, z)
        return np.asarray(tf.cast(loss, tf.float64)), np.asarray(tf.cast(grad, tf.float64))


BACKEND = TensorFlowBackend()
