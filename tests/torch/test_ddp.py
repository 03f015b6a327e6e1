"""global_normalizer=True under DistributedDataParallel, for real: two processes (gloo, CPU) on uneven shards
with ignore_index, compared with one process on the concatenated batch."""

from __future__ import annotations

import os
import socket
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cbloss.adapters.torch import ClassBalancedLoss

if not dist.is_available():
    pytest.skip("torch.distributed is not available in this build", allow_module_level=True)

COUNTS = [40, 12, 5, 2]
SPLIT = 3  # rank 0 gets 3 samples, rank 1 gets the other 10: uneven shards
CONFIGS = [
    dict(loss="softmax", reduction="mean", ignore_index=-1),
    dict(loss="softmax", reduction="weighted_mean", ignore_index=-1),
    dict(loss="focal", reduction="mean", ignore_index=-1, label_smoothing=0.1),
    dict(loss="softmax_focal", reduction="weighted_mean", ignore_index=-1),
]


def _data():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(13, 6, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 4, (13,), generator=generator)
    y[[1, 2, 7]] = -1  # ignored; rank 0 then has a single counted sample
    return x, y


def _model():
    torch.manual_seed(1)
    return torch.nn.Linear(6, 4).double()


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        x, y = _data()
        shard = slice(0, SPLIT) if rank == 0 else slice(SPLIT, None)
        results = []
        for config in CONFIGS:
            ddp = torch.nn.parallel.DistributedDataParallel(_model())
            criterion = ClassBalancedLoss(COUNTS, 0.99, global_normalizer=True, **config)
            loss = criterion(ddp(x[shard]), y[shard])
            loss.backward()
            mean_loss = loss.detach().clone()
            dist.all_reduce(mean_loss)
            results.append((mean_loss / world, [p.grad.clone() for p in ddp.module.parameters()]))
            del ddp  # its reducer holds the process group
        if rank == 0:
            torch.save(results, out)
        # Both ranks reach the teardown together: destroying the group while the other rank still talks to it
        # aborted a gloo thread ("terminate called without an active exception") in one CI run.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_gradients_equal_single_process_on_the_full_batch():
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ddp.pt")
        mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
        results = torch.load(out)
    x, y = _data()
    for config, (ddp_loss, ddp_grads) in zip(CONFIGS, results, strict=True):
        model = _model()
        loss = ClassBalancedLoss(COUNTS, 0.99, **config)(model(x), y)
        loss.backward()
        torch.testing.assert_close(ddp_loss, loss.detach(), rtol=1e-12, atol=0, msg=str(config))
        for got, expected in zip(ddp_grads, [p.grad for p in model.parameters()], strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-15, msg=str(config))


def test_global_normalizer_without_process_group_is_local():
    x, y = _data()
    a = ClassBalancedLoss(COUNTS, 0.99, global_normalizer=True, ignore_index=-1)(x[:, :4], y)
    b = ClassBalancedLoss(COUNTS, 0.99, ignore_index=-1)(x[:, :4], y)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def _outsider_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        only_rank_0 = dist.new_group([0])  # every rank takes part in creating a group
        if rank == 1:
            x, y = _data()
            criterion = ClassBalancedLoss(COUNTS, 0.99, global_normalizer=True, process_group=only_rank_0)
            try:
                criterion(x[:, :4], y.clamp(min=0))
                message = "no error"
            except ValueError as error:
                message = str(error)
            with open(out, "w") as file:
                file.write(message)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_a_rank_outside_the_process_group_is_an_error():
    """Outside the group, the all-reduce does nothing and the world size is -1: the denominator came out negative
    and the loss a silent 0. It is a ValueError naming process_group, as all_reduce_counts' is one naming group."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "message.txt")
        mp.spawn(_outsider_worker, args=(2, _free_port(), out), nprocs=2, join=True)
        with open(out) as file:
            message = file.read()
    assert message == "process_group: this rank is not a member of the process group"
