"""all_reduce_counts under torch.distributed, for real: two gloo processes count uneven shards of a long-tailed
label set (3 labels on rank 0, 17 on rank 1) and the summed counts equal counting the whole set in one process.
Also: invalid counts and different numbers of classes on one rank fail on every rank instead of hanging, and
without a process group the counts come back unchanged."""

from __future__ import annotations

import datetime
import os
import socket
import tempfile

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import cbloss
from cbloss.adapters import _torch_distributed
from cbloss.adapters.torch import all_reduce_counts

if not dist.is_available():
    pytest.skip("torch.distributed is not available in this build", allow_module_level=True)

C = 5
SPLIT = 3  # rank 0 gets the first 3 samples, rank 1 the other 17: uneven shards


def _labels() -> torch.Tensor:
    """20 long-tailed labels (9, 5, 3, 2, 1 of the classes), shuffled so that both shards mix classes."""
    labels = np.repeat(np.arange(C), [9, 5, 3, 2, 1])
    return torch.as_tensor(np.random.default_rng(0).permutation(labels))


def _multi_hot() -> torch.Tensor:
    """20 multi-hot targets whose classes are positive with long-tailed rates."""
    rng = np.random.default_rng(1)
    return torch.as_tensor(rng.random((20, C)) < np.array([0.8, 0.5, 0.3, 0.15, 0.05]))


class _Images(torch.utils.data.Dataset):
    """A torchvision-style dataset: its labels are in ``targets``, and loading an image is an error."""

    def __init__(self, targets: torch.Tensor):
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        raise AssertionError("an image was loaded")


def _errors(call) -> str | None:
    try:
        call()
    except ValueError as error:
        return str(error)
    return None


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    # A short timeout turns a hang (one rank waiting in a collective the other never joins) into a failure.
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=120))
    try:
        labels, multi_hot = _labels(), _multi_hot()
        shard = range(SPLIT) if rank == 0 else range(SPLIT, len(labels))
        local = cbloss.count_samples_per_class(labels[list(shard)], C)
        pairs = torch.utils.data.TensorDataset(torch.zeros(len(labels), 2), labels)
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(pairs, list(shard)), batch_size=4)
        images = torch.utils.data.DataLoader(torch.utils.data.Subset(_Images(labels), list(shard)), batch_size=4)
        only_rank_1 = dist.new_group([1])  # every rank takes part in creating a group
        results = {
            "local": local,
            "tensor": all_reduce_counts(local),
            "pairs": all_reduce_counts(cbloss.count_samples_per_class(loader, C)),
            "targets": all_reduce_counts(cbloss.count_samples_per_class(images, C)),
            "multi_hot": all_reduce_counts(cbloss.count_samples_per_class(multi_hot[list(shard)], C, multi_label=True)),
            "int32_tensor": all_reduce_counts(torch.as_tensor(local, dtype=torch.int32)),
            "list": all_reduce_counts(local.tolist()),
            "whole_floats": all_reduce_counts(local.astype(np.float64)),
            "explicit_group": all_reduce_counts(local, group=dist.group.WORLD),
            "mismatch": _errors(lambda: all_reduce_counts(np.ones(C if rank == 0 else C - 1, dtype=np.int64))),
            "invalid": _errors(lambda: all_reduce_counts([1, 2, 0, 0, 0] if rank == 0 else [1, -1, 2, 0, 0])),
            "group_of_rank_1": (
                all_reduce_counts(local, group=only_rank_1)
                if rank == 1
                else _errors(lambda: all_reduce_counts(local, group=only_rank_1))
            ),
        }
        # after the errors the ranks are still in step: the next collective sums what it should
        results["after_errors"] = all_reduce_counts(local)
        given = local.copy()
        all_reduce_counts(given)
        results["argument_unchanged"] = np.array_equal(given, local)
        torch.save(results, os.path.join(out, f"rank{rank}.pt"))
        dist.barrier()  # both ranks reach the teardown together (see tests/torch/test_ddp.py)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(2, _free_port(), tmp), nprocs=2, join=True)
        return [torch.load(os.path.join(tmp, f"rank{rank}.pt"), weights_only=False) for rank in range(2)]


def test_summed_counts_equal_counting_the_whole_set_in_one_process(ranks):
    labels = _labels()
    whole = cbloss.count_samples_per_class(labels, C)
    assert whole.tolist() == np.bincount(labels.numpy(), minlength=C).tolist() == [9, 5, 3, 2, 1]
    # the shards are uneven and neither holds the whole set's counts, so the sum is not a copy of one of them
    assert ranks[0]["local"].sum() == SPLIT and ranks[1]["local"].sum() == len(labels) - SPLIT
    assert all(rank["local"].tolist() != whole.tolist() for rank in ranks)
    for rank in ranks:
        for name in ("tensor", "pairs", "targets", "int32_tensor", "list", "whole_floats", "explicit_group"):
            assert rank[name].dtype == np.int64, name
            assert rank[name].tolist() == whole.tolist(), name
        assert rank["after_errors"].tolist() == whole.tolist()
        assert rank["argument_unchanged"]


def test_summed_multi_hot_counts_equal_the_whole_set(ranks):
    multi_hot = _multi_hot()
    whole = cbloss.count_samples_per_class(multi_hot, C, multi_label=True)
    assert whole.tolist() == multi_hot.sum(0).tolist()
    for rank in ranks:
        assert rank["multi_hot"].dtype == np.int64
        assert rank["multi_hot"].tolist() == whole.tolist()


def test_every_rank_fails_on_different_numbers_of_classes(ranks):
    for rank, own in zip(ranks, (C, C - 1), strict=True):
        assert rank["mismatch"] == (
            f"samples_per_class: the ranks give different numbers of classes (on this rank: [{own}]); "
            "every rank must count the same classes"
        )


def test_every_rank_fails_on_invalid_counts_on_one_rank(ranks):
    assert ranks[0]["invalid"].startswith("samples_per_class: another rank's counts are invalid")
    assert ranks[1]["invalid"] == "samples_per_class: counts must be finite and >= 0; classes [1] have [-1.0]"


def test_group_sums_over_its_members_only(ranks):
    assert ranks[1]["group_of_rank_1"].tolist() == ranks[1]["local"].tolist()
    assert ranks[0]["group_of_rank_1"] == "group: this rank is not a member of the process group"


@pytest.mark.parametrize(
    "given",
    [
        np.array([9, 0, 3], dtype=np.int64),
        np.array([9, 0, 3], dtype=np.uint8),
        np.array([9.0, 0.0, 3.0], dtype=np.float32),
        torch.tensor([9, 0, 3], dtype=torch.int32),
        torch.tensor([9.0, 0.0, 3.0], dtype=torch.float64),
        [9, 0, 3],
        (9, 0, 3),
    ],
    ids=["int64", "uint8", "float32", "torch-int32", "torch-float64", "list", "tuple"],
)
def test_without_a_process_group_the_counts_come_back_unchanged(given):
    assert not dist.is_initialized()
    got = all_reduce_counts(given)
    assert isinstance(got, np.ndarray) and got.dtype == np.int64 and got.tolist() == [9, 0, 3]
    got[0] = 100  # the result is the caller's: writing it leaves the argument as it was
    assert [int(v) for v in given] == [9, 0, 3]


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [
        ([[1, 2], [3, 4]], ValueError, r"^samples_per_class: must be a non-empty 1-D sequence, got shape \(2, 2\)"),
        ([], ValueError, r"^samples_per_class: must be a non-empty 1-D sequence"),
        ([3, -1], ValueError, r"^samples_per_class: counts must be finite and >= 0; classes \[1\] have \[-1.0\]"),
        ([3, float("nan")], ValueError, r"^samples_per_class: counts must be finite and >= 0"),
        ([3, 1.5], ValueError, r"^samples_per_class: counts must be whole numbers .*classes \[1\] have \[1.5\]"),
        ([3, 2.0**53], ValueError, r"^samples_per_class: counts must be whole numbers \(below 2\*\*53\)"),
        (["a", "b"], TypeError, r"^samples_per_class: must be real numbers"),
    ],
    ids=["2-D", "empty", "negative", "nan", "fractional", "too-large", "strings"],
)
def test_invalid_counts_name_the_argument(given, error, message):
    with pytest.raises(error, match=message):
        all_reduce_counts(given)


def test_nccl_reduces_on_the_current_cuda_device(monkeypatch):
    """NCCL takes CUDA tensors only: the counts go to the current device; gloo reduces on the CPU."""
    monkeypatch.setattr(dist, "get_backend", lambda group=None: dist.Backend.NCCL)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert _torch_distributed._collective_device(None) == torch.device("cuda", 3)
    monkeypatch.setattr(dist, "get_backend", lambda group=None: dist.Backend.GLOO)
    assert _torch_distributed._collective_device(None) == torch.device("cpu")
