"""PyTorch's ``torch.distributed`` bindings: the global denominator of DDP's means (docs/conventions.md §12) and
:func:`all_reduce_counts`, the class counts summed over the ranks (§3) around the core's checks
(:func:`cbloss.counts.sum_over_replicas`). :mod:`cbloss.adapters.torch` exports them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..counts import sum_over_replicas
from ..weights import whole_counts

__all__ = ["all_reduce_counts", "global_sum"]


def global_sum(group: Any) -> Callable[[Any], Any] | None:
    """DDP averages the replicas' gradients, so each replica divides its sum by the global denominator over the
    world size (docs/conventions.md §12). None (local) when torch.distributed is not initialised."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None
    if dist.get_rank(group) < 0:  # its collectives would do nothing, and its world size is -1
        raise ValueError("process_group: this rank is not a member of the process group")

    def global_total(local: torch.Tensor) -> torch.Tensor:
        total = local.clone()  # all_reduce writes in place
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
        return total / dist.get_world_size(group)

    return global_total


def _collective_device(group: Any) -> torch.device:
    """Where a collective of ``group`` reduces: NCCL on the current CUDA device, gloo and mixed backends on the CPU."""
    import torch.distributed as dist

    if dist.get_backend(group) == dist.Backend.NCCL:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_counts(samples_per_class: Any, group: Any = None) -> np.ndarray:
    """Class counts summed over the ranks of a process group, ``n_c = sum_r n_c^(r)``, so that every rank builds the
    same weights (docs/conventions.md §3). A collective (``all_reduce``, SUM, on the CPU for gloo, the current CUDA
    device for NCCL) that every rank of ``group`` calls with the same number of classes; invalid counts or a
    class-count mismatch on one rank raise ``ValueError`` naming ``samples_per_class`` on every rank, never hang.

    Args:
        samples_per_class: this rank's ``(C,)`` counts (whole numbers >= 0; tensor, array or sequence), for
            example :func:`cbloss.count_samples_per_class` of its shard; not modified.
        group: the process group; None is the default group.

    Returns:
        The summed counts, an int64 NumPy array, the same on every rank; without an initialised
        ``torch.distributed``, this process's counts as int64. ``ValueError`` naming ``group`` on a rank outside it.

    Example:
        >>> import torch, cbloss
        >>> from cbloss.adapters.torch import all_reduce_counts
        >>> all_reduce_counts(cbloss.count_samples_per_class(torch.tensor([0, 2, 2, 1, 2]), 3)).tolist()  # no group
        [1, 1, 3]
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return whole_counts(samples_per_class)
    if dist.get_rank(group) < 0:
        raise ValueError("group: this rank is not a member of the process group")
    device = _collective_device(group)

    def all_sum(rows: list[np.ndarray]) -> np.ndarray:
        total = torch.tensor(rows[0], device=device)  # a new tensor: all_reduce writes in place
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
        return total.cpu().numpy()

    world = dist.get_world_size(group)
    return sum_over_replicas(lambda: [samples_per_class], 1, world, all_sum, peer="rank", peers="ranks", host="rank")
