"""Class counts summed across replicas: the protocol every adapter's ``all_reduce_counts`` runs around its collective.

Under data parallelism each replica counts its shard, and the whole data set's counts are the sum over the
replicas, ``n_c = sum_r n_c^(r)`` (docs/conventions.md §3). A collective that one replica leaves, because its
counts are invalid, or that sums rows of different lengths, hangs or sums wrongly. So a first, small sum over the
replicas carries a header, ``(C_r, C_r**2, invalid_r)`` from each replica ``r``, and every replica checks it before
the counts are summed: all of them raise, or none. ``sum(C_r)**2 == R * sum(C_r**2)`` holds exactly when every
``C_r`` is the same (Cauchy-Schwarz, exact in int64), so a SUM, the one reduction every framework offers, is enough.
The adapters only run the collective.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .weights import whole_counts

__all__ = ["sum_over_replicas"]


def sum_over_replicas(
    local_counts: Callable[[], list[Any]],
    local_replicas: int,
    replicas: int,
    all_sum: Callable[[list[np.ndarray]], np.ndarray],
    *,
    int32_transport: bool = False,
    peer: str = "replica",
    peers: str = "replicas",
    host: str = "worker",
) -> np.ndarray:
    r"""The class counts summed over ``replicas`` replicas, checked on every one of them:

    .. math::

        n_c = \sum_r n_c^{(r)}

    Args:
        local_counts: returns this process's counts, one ``(C,)`` array or sequence per local replica (in the
            order ``all_sum`` expects); it may raise ``TypeError`` or ``ValueError`` naming the argument, and each
            row is checked with :func:`cbloss.weights.whole_counts`. An error is raised here only after the
            header has gone round, so the other processes raise too instead of waiting for this one.
        local_replicas: the number of replicas in this process (the rows ``local_counts`` should return).
        replicas: the number of replicas the collective sums over (every process's rows together).
        all_sum: the collective: given one row per local replica (int64, or the ``(2, C)`` int32 halves with
            ``int32_transport``), the sum of the rows of every replica as an int64 NumPy array; every process calls
            it twice, with the header, then with the counts.
        int32_transport: send each row as two int32 halves, its low 31 bits and the rest, for a collective that
            carries int32 only (JAX without ``jax_enable_x64``); ``all_sum`` must still add them in int64, since
            the halves of many processes overflow int32. Exact up to ``2**62`` per replica and class.
        peer, peers: the words for a replica and replicas in the errors ("rank", "ranks"; "process", "processes").
        host: the word for the place this call runs ("worker", "rank", "process").

    Returns:
        The summed counts, a new int64 NumPy array of length ``C``, the same on every replica.

    Example:
        >>> import numpy as np
        >>> from cbloss.counts import sum_over_replicas
        >>> shards = [np.array([3, 0, 1]), np.array([2, 5, 0])]  # two replicas in this process
        >>> total = lambda rows: np.sum(rows, axis=0)  # the collective, here in one process
        >>> sum_over_replicas(lambda: shards, 2, 2, total).tolist()
        [5, 5, 1]
    """
    try:
        rows, error = [whole_counts(row) for row in local_counts()], None
    except (TypeError, ValueError) as invalid:
        rows, error = [np.zeros(0, dtype=np.int64)] * local_replicas, invalid  # they still send a header

    def summed(local_rows: list[np.ndarray]) -> np.ndarray:
        if not int32_transport:
            return np.asarray(all_sum(local_rows), dtype=np.int64)
        halves = all_sum([np.stack([row & (2**31 - 1), row >> 31]).astype(np.int32) for row in local_rows])
        return np.asarray(halves[0], dtype=np.int64) + (np.asarray(halves[1], dtype=np.int64) << 31)

    header = [np.array([row.size, row.size**2, error is not None], dtype=np.int64) for row in rows]
    sum_c, sum_c2, any_invalid = (int(value) for value in summed(header))
    if error is not None:
        raise error
    if any_invalid:
        raise ValueError(
            f"samples_per_class: another {host}'s counts are invalid (the error on that {host} names them)"
        )
    if sum_c**2 != replicas * sum_c2:
        raise ValueError(
            f"samples_per_class: the {peers} give different numbers of classes (on this {host}: "
            f"{[row.size for row in rows]}); every {peer} must count the same classes"
        )
    return summed(rows)
