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


@pytest.mark.parametrize(
    "logits, labels, given",
    [
        (torch.zeros(3, 4), np.array([0, 1, 2]), "ndarray"),
        (np.zeros((3, 4)), torch.tensor([0, 1, 2]), "Tensor"),
        (torch.zeros(3, 4), [0, 1, 2], "list"),
    ],
)
def test_labels_of_another_framework_than_the_logits_are_named(logits, labels, given):
    """Class weights of any framework are read by value; labels are not (they are as large as the batch): labels
    of another framework than the logits' are a TypeError naming them (docs/conventions.md §6.1)."""
    with pytest.raises(TypeError, match=rf"^labels: must be an array of the logits' framework \(\w+\), got {given}"):
        cbloss.class_balanced_loss(logits, labels)
    with pytest.raises(TypeError, match=r"^labels: "):
        cbloss.class_balanced_loss_and_grad(logits, labels, loss="focal")
