"""count_samples_per_class over tf.data pipelines (the framework-free cases are in tests/test_weights.py)."""

from __future__ import annotations

import numpy as np
import pytest

import cbloss
from tests.framework_checks import (
    check_count_multi_hot_bfloat16,
    check_validate_labels,
    check_weights_beyond_float32,
)
from tests.test_weights import LABELS, _check_counts

tf = pytest.importorskip("tensorflow")


def test_count_from_tensors_and_pipelines():
    labels = LABELS.reshape(-1)
    _check_counts(cbloss.count_samples_per_class(tf.constant(labels), 5))
    pairs = tf.data.Dataset.from_tensor_slices((np.zeros((6, 2), np.float32), labels)).batch(4)
    _check_counts(cbloss.count_samples_per_class(pairs, 5))
    dicts = tf.data.Dataset.from_tensor_slices({"image": np.zeros((6, 2), np.float32), "label": labels}).batch(4)
    _check_counts(cbloss.count_samples_per_class(dicts, 5))
    _check_counts(cbloss.count_samples_per_class(tf.data.Dataset.from_tensor_slices(labels).batch(5), 5))
    # Keras's (x, y, sample_weight) items: the labels, not the (integer) sample weights
    triples = (np.zeros((6, 2), np.float32), labels, np.ones(6, np.int64))
    _check_counts(cbloss.count_samples_per_class(tf.data.Dataset.from_tensor_slices(triples).batch(4), 5))


def test_count_ragged_labels_is_an_error_that_says_what_to_pass():
    """NumPy makes an object array of a ragged tensor: named as such, not as a dtype that is not an integer."""
    ragged = tf.ragged.constant([[0, 2], [2]], dtype=tf.int32)
    with pytest.raises(TypeError, match=r"^labels: must be a rectangular array, got RaggedTensor .*\.flat_values"):
        cbloss.count_samples_per_class(ragged, 5)
    _check_counts(cbloss.count_samples_per_class(ragged.flat_values, 5), [1, 0, 2, 0, 0])


def test_count_multi_hot_bfloat16_tensors():
    check_count_multi_hot_bfloat16(lambda t: tf.cast(tf.constant(t), tf.bfloat16))


def test_validate_labels_reads_tensors_and_refuses_graph_tensors():
    check_validate_labels(
        tf.constant, lambda t: tf.cast(tf.constant(t), tf.bfloat16), lambda f: tf.function(f, autograph=False)
    )


def test_weights_beyond_float32_are_named():
    from cbloss.adapters.tensorflow import class_balanced_loss

    check_weights_beyond_float32(lambda z, y, w: class_balanced_loss(z, y, w, reduction="sum"), tf.constant)
