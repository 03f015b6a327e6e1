"""TensorFlow tests: skipped (with the reason) when TensorFlow is not installed.

Two logical CPU devices are configured here, at import time, before TensorFlow initialises its devices, so
that the tf.distribute tests can run a MirroredStrategy over two replicas on a CPU-only machine.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow", reason="tensorflow is not installed")

LOGICAL_CPUS = 2
try:
    _cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * LOGICAL_CPUS)
except RuntimeError:  # devices already initialised by an earlier import in this process
    pass
