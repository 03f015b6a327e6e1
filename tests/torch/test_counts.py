"""count_samples_per_class on PyTorch inputs (the framework-free cases are in tests/test_weights.py)."""

from __future__ import annotations

import pytest

import cbloss
from tests.test_weights import LABELS, _check_counts


def test_count_from_torch():
    torch = pytest.importorskip("torch")
    _check_counts(cbloss.count_samples_per_class(torch.as_tensor(LABELS), 5))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.zeros(6, 1), torch.as_tensor(LABELS.reshape(-1))), batch_size=4
    )
    _check_counts(cbloss.count_samples_per_class((y for _, y in loader), 5))
