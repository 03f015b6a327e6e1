"""The framework-neutral core on PyTorch tensors: weights held in an autograd graph are read by value."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cbloss


@pytest.mark.parametrize("loss", ["softmax", "sigmoid", "focal", "softmax_focal"])
def test_from_weights_reads_a_tensor_that_requires_grad(loss):
    weights = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64, requires_grad=True)
    criterion = cbloss.ClassBalancedLoss.from_weights(weights, loss=loss)
    np.testing.assert_array_equal(criterion.weights, [0.5, 1.0, 2.0])
    logits, labels = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 3.0]]), np.array([0, 2])
    want = cbloss.class_balanced_loss(logits, labels, [0.5, 1.0, 2.0], loss=loss)
    assert criterion(logits, labels) == want
    assert cbloss.class_balanced_loss(logits, labels, weights, loss=loss) == want
