"""JAX's collectives for class counts: :func:`all_reduce_counts`, the counts summed over a mapped axis or over the
processes of a multi-host run (docs/conventions.md §3), around the core's checks
(:func:`cbloss.counts.sum_over_replicas`). :mod:`cbloss.adapters.jax` exports it."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import multihost_utils

from ..counts import sum_over_replicas
from ..weights import whole_counts
from ._jax_kernels import is_traced

__all__ = ["all_reduce_counts"]


def all_reduce_counts(samples_per_class: Any, axis_name: Hashable | None = None) -> Any:
    r"""The class counts of the whole data set from each device's or process's shard, ``n_c = sum_r n_c^(r)``
    over the replicas ``r``, so that every replica builds the same class-balanced weights (docs/conventions.md §3).

    Args:
        samples_per_class: this replica's (C,) counts (:func:`cbloss.count_samples_per_class` of its shard).
        axis_name: inside ``shard_map``/``pmap``, the mapped axis: ``lax.psum(samples_per_class, axis_name)``.
            None: outside any transformation, the sum over the processes of a multi-host run (every process calls
            it; invalid counts or a class-count mismatch on one process raise on every process,
            :func:`cbloss.counts.sum_over_replicas`).

    Returns:
        With ``axis_name``, the psum'd counts (int32 unless ``jax_enable_x64``). Without, an int64 NumPy array:
        the counts themselves in a single-process run, else the sum over the processes (exact up to ``2**62``).

    Example:
        >>> import numpy as np, cbloss
        >>> from cbloss.adapters.jax import all_reduce_counts
        >>> shard = np.array([0, 2, 2, 1, 2])  # this process's labels
        >>> counts = all_reduce_counts(cbloss.count_samples_per_class(shard, 3))
        >>> counts.tolist()  # one process: its own counts
        [1, 1, 3]
    """
    if axis_name is not None:
        counts = samples_per_class if is_traced(samples_per_class) else jnp.asarray(samples_per_class)
        if counts.ndim != 1:
            raise ValueError(f"samples_per_class: must be a 1-D array of class counts, got shape {counts.shape}")
        return lax.psum(counts, axis_name)
    if is_traced(samples_per_class):
        raise TypeError(
            "samples_per_class: traced counts can only be summed over a mapped axis; pass axis_name inside "
            "shard_map/pmap, or call all_reduce_counts outside jit with concrete counts"
        )
    if jax.process_count() == 1:
        return whole_counts(samples_per_class)
    return sum_over_replicas(  # gathered, then summed on the host in int64
        lambda: [samples_per_class],
        1,
        jax.process_count(),
        lambda rows: np.asarray(multihost_utils.process_allgather(rows[0]), dtype=np.int64).sum(axis=0),
        int32_transport=True,  # without jax_enable_x64 JAX would cast int64 counts to int32 on the way
        peer="process",
        peers="processes",
        host="process",
    )
