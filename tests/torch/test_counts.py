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


def test_count_from_a_dataloader_reads_targets_without_loading_inputs():
    torch = pytest.importorskip("torch")

    class Images(torch.utils.data.Dataset):
        def __init__(self):
            self.targets = torch.as_tensor(LABELS.reshape(-1))

        def __len__(self):
            return len(self.targets)

        def __getitem__(self, index):
            raise AssertionError("an image was loaded")

    loader = torch.utils.data.DataLoader(Images(), batch_size=4)
    _check_counts(cbloss.count_samples_per_class(loader, 5))
    subset = torch.utils.data.Subset(Images(), [0, 2, 4])
    want = torch.bincount(torch.as_tensor(LABELS.reshape(-1))[[0, 2, 4]], minlength=5).numpy()
    assert cbloss.count_samples_per_class(torch.utils.data.DataLoader(subset), 5).tolist() == want.tolist()


def test_count_iterates_a_dataloader_of_pairs():
    torch = pytest.importorskip("torch")
    dataset = torch.utils.data.TensorDataset(torch.zeros(6, 3), torch.as_tensor(LABELS.reshape(-1)))
    _check_counts(cbloss.count_samples_per_class(torch.utils.data.DataLoader(dataset, batch_size=4), 5))
