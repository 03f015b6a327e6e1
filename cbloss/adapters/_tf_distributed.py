"""TensorFlow's ``tf.distribute`` bindings: the denominator of the means summed over the replicas (docs/conventions.md
§12) and :func:`all_reduce_counts`, the class counts summed over the replicas (§3) around the core's checks
(:func:`cbloss.counts.sum_over_replicas`). :mod:`cbloss.adapters.tensorflow` exports them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from ..counts import sum_over_replicas
from ..weights import whole_counts

__all__ = ["all_reduce_counts", "global_sum"]


def global_sum(cross_replica: bool) -> Callable[[Any], Any] | None:
    """The all-reduce (SUM) of the replica context of a multi-replica ``tf.distribute`` strategy, or None."""
    context = tf.distribute.get_replica_context()
    if not cross_replica or context is None or context.num_replicas_in_sync <= 1:
        return None
    return lambda total: context.all_reduce(tf.distribute.ReduceOp.SUM, total)


def _local_parts(samples_per_class: Any, strategy: Any, local_replicas: int) -> list[Any]:
    """This worker's counts, one part per local replica, in the strategy's replica order."""
    if isinstance(samples_per_class, tf.distribute.DistributedValues):
        parts = list(strategy.experimental_local_results(samples_per_class))
        if parts == [samples_per_class]:
            raise ValueError(
                "strategy: a per-replica value needs the strategy that made it; pass strategy= or call "
                "all_reduce_counts under strategy.scope()"
            )
    elif (
        isinstance(samples_per_class, (list, tuple))
        and len(samples_per_class) > 0
        and all(np.ndim(part) >= 1 for part in samples_per_class)
    ):
        parts = list(samples_per_class)
    else:  # this worker's counts, counted on the host: its first replica carries them into the sum
        counts = whole_counts(samples_per_class)
        return [counts] + [np.zeros_like(counts)] * (local_replicas - 1)
    if len(parts) != local_replicas:
        raise ValueError(
            f"samples_per_class: {len(parts)} per-replica counts were given, but the strategy has {local_replicas} "
            "replica(s) on this worker (pass the strategy that made them)"
        )
    return parts


def _replica_sum(strategy: Any, local_rows: list[np.ndarray]) -> np.ndarray:
    """``strategy.reduce(SUM)`` of one row per local replica. Replica ids run worker by worker, so a replica's id
    modulo the number of local replicas is its place among this worker's replicas."""
    values = strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(local_rows[context.replica_id_in_sync_group % len(local_rows)])
    )
    return strategy.reduce(tf.distribute.ReduceOp.SUM, values, axis=None).numpy()


def all_reduce_counts(samples_per_class: Any, strategy: Any = None) -> np.ndarray:
    """Class counts summed over the replicas of a ``tf.distribute`` strategy: ``n_c = sum_r n_c^(r)`` for each
    class ``c``, where ``n^(r)`` are replica ``r``'s counts (:func:`cbloss.count_samples_per_class` of its share
    of the data), with ``strategy.reduce(tf.distribute.ReduceOp.SUM, ..., axis=None)``.

    The replicas' shares of a distributed dataset add up to the whole dataset, so the result is the whole
    dataset's counts, the same on every worker, from which every replica builds the same class-balanced weights
    (docs/conventions.md §3). Call it eagerly, in cross-replica context (outside ``strategy.run``), on every
    worker: the sum is a collective. Every replica must count the same number of classes ``C``; a mismatch or invalid
    counts on one worker is an error on every worker rather than a hang or a wrong sum
    (:func:`cbloss.counts.sum_over_replicas`).

    Args:
        samples_per_class: the counts to sum, whole numbers >= 0, one of

            - a per-replica value from ``strategy.run`` (each replica's ``(C,)`` counts);
            - a list or tuple with one ``(C,)`` array per replica of this worker, in replica order (for example
              counts of the parts ``strategy.experimental_local_results`` gives);
            - one ``(C,)`` array or sequence: this worker's counts, counted on the host (summed over the workers;
              with one worker, returned as they are).
        strategy: the strategy; None (default) is ``tf.distribute.get_strategy()``, the strategy whose scope the
            call is in. With the default (no) strategy, or any single-replica strategy, the counts come back
            unchanged (as int64).

    Returns:
        The summed counts, an int64 NumPy array of length ``C``.

    Example:
        >>> import numpy as np
        >>> import tensorflow as tf
        >>> import cbloss
        >>> from cbloss.adapters.tensorflow import all_reduce_counts
        >>> strategy = tf.distribute.get_strategy()  # or tf.distribute.MirroredStrategy(), the same lines
        >>> labels = tf.data.Dataset.from_tensor_slices([0, 2, 2, 1, 2]).batch(2)
        >>> def count(y, total):  # on each replica, eagerly: its part of the batch, added to its total
        ...     return total + cbloss.count_samples_per_class(y, 3)
        >>> total = strategy.run(lambda: np.zeros(3, np.int64))  # per replica
        >>> for y in strategy.experimental_distribute_dataset(labels):
        ...     total = strategy.run(count, args=(y, total))
        >>> all_reduce_counts(total, strategy).tolist()
        [1, 1, 3]

        ``cbloss.count_samples_per_class`` reads label values, so the counting ``strategy.run`` runs eagerly
        (not in a ``tf.function``); ``tf.math.bincount(y, minlength=C, maxlength=C, dtype=tf.int64)`` counts
        class indices inside one.
    """
    if not tf.executing_eagerly():
        raise RuntimeError("all_reduce_counts: it returns NumPy, so it runs eagerly; call it outside tf.function")
    if tf.distribute.has_strategy() and not tf.distribute.in_cross_replica_context():
        raise RuntimeError(
            "all_reduce_counts: call it in cross-replica context, on the per-replica counts strategy.run returns, "
            "not inside strategy.run"
        )
    strategy = tf.distribute.get_strategy() if strategy is None else strategy
    if strategy.num_replicas_in_sync == 1:
        return whole_counts(_local_parts(samples_per_class, strategy, 1)[0])
    local_replicas = len(strategy.extended.worker_devices)
    return sum_over_replicas(
        lambda: _local_parts(samples_per_class, strategy, local_replicas),
        local_replicas,
        strategy.num_replicas_in_sync,
        lambda rows: _replica_sum(strategy, rows),
    )
