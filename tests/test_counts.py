"""cbloss.counts.sum_over_replicas, the protocol around every adapter's all_reduce_counts collective, on a
simulated collective: each "process" runs in its own thread, and the SUM waits for all of them (a barrier), as a
real all-reduce does. The sums equal counting the whole data set at once; invalid counts or different numbers of
classes on one process are an error on every process, never a hang."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import cbloss
from cbloss.counts import sum_over_replicas


def _run(given: list, sent: list | None = None, **options: object) -> list:
    """Each process's result (or the error it raised) when the processes run at once. ``given[p]`` is process
    ``p``'s list of rows, one per local replica, or an exception its ``local_counts`` raises (one replica); what
    the processes hand the collective is appended to ``sent``."""
    processes = len(given)
    replicas = sum(len(rows) if isinstance(rows, list) else 1 for rows in given)
    barrier = threading.Barrier(processes, timeout=30)  # a process that leaves the protocol breaks it: no hang
    deposits: list = [None] * processes
    results: list = [None] * processes

    def process(p: int) -> None:
        rows = given[p]

        def local_counts() -> list:
            if isinstance(rows, Exception):
                raise rows
            return rows

        def all_sum(local_rows: list) -> np.ndarray:
            if sent is not None:
                sent.extend(local_rows)
            deposits[p] = np.sum(np.asarray(local_rows, dtype=np.int64), axis=0)  # a sum in int64
            barrier.wait()
            total = sum(deposits)
            barrier.wait()  # every process has read the total before the next round overwrites it
            return total

        local = len(rows) if isinstance(rows, list) else 1
        try:
            results[p] = sum_over_replicas(local_counts, local, replicas, all_sum, **options)  # type: ignore[arg-type]
        except (TypeError, ValueError, threading.BrokenBarrierError) as error:  # compared below, or a hang
            results[p] = error

    threads = [threading.Thread(target=process, args=(p,)) for p in range(processes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint16, np.float64, np.float32])
def test_the_sum_equals_counting_the_whole_data_set(dtype):
    rng = np.random.default_rng(0)
    labels = rng.choice(6, size=200, p=[0.5, 0.25, 0.12, 0.08, 0.04, 0.01])
    shards = np.split(labels, [13, 90, 91, 150])  # uneven, one of a single label
    parts = [cbloss.count_samples_per_class(shard, 6).astype(dtype) for shard in shards]
    whole = cbloss.count_samples_per_class(labels, 6)
    assert all(part.sum() < whole.sum() for part in parts)  # no shard alone holds the whole
    results = _run([parts[:2], parts[2:3], parts[3:]])  # processes of 2, 1 and 2 replicas
    for got in results:
        assert isinstance(got, np.ndarray) and got.dtype == np.int64
        assert got.tolist() == whole.tolist() == np.bincount(labels, minlength=6).tolist()


@pytest.mark.parametrize("int32_transport", [False, True])
def test_counts_beyond_int32_sum_exactly(int32_transport):
    big = np.array([3 * 2**40 + 5, 2**31 - 1, 2**31, 0, 2**52 + 3], dtype=np.int64)  # whole counts stop at 2**53
    sent: list = []
    for got in _run([[big], [big // 2, big // 4], [big - big // 2 - big // 4]], sent, int32_transport=int32_transport):
        assert got.dtype == np.int64 and got.tolist() == [2 * int(n) for n in big]
    # the header and the counts of every replica; with int32_transport nothing wider than int32 is handed over
    assert len(sent) == 8
    assert all(row.dtype == (np.int32 if int32_transport else np.int64) for row in sent)


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        ([np.array([4, -1, 2])], ValueError, r"^samples_per_class: counts must be finite and >= 0; classes \[1\]"),
        ([np.array([4, 1.5, 2])], ValueError, r"^samples_per_class: counts must be whole numbers"),
        ([np.array([2.0**53, 1.0])], ValueError, r"^samples_per_class: counts must be whole numbers \(below 2\*\*53\)"),
        ([np.ones((3, 2))], ValueError, r"^samples_per_class: must be a non-empty 1-D sequence"),
        ([["a", "b", "c"]], TypeError, r"^samples_per_class: must be real numbers"),
        (ValueError("samples_per_class: 3 per-replica counts were given"), ValueError, r"^samples_per_class: 3 per"),
    ],
    ids=["negative", "fractional", "2**53", "2-D", "strings", "local-error"],
)
def test_invalid_counts_on_one_process_are_an_error_on_every_process(bad, error, message):
    good = [np.array([4, 1, 2])]
    first, second, third = _run([good, bad, good + good], peer="rank", peers="ranks", host="rank")
    with pytest.raises(error, match=message):
        raise second
    for other in (first, third):
        assert type(other) is ValueError
        assert str(other) == "samples_per_class: another rank's counts are invalid (the error on that rank names them)"


def test_different_numbers_of_classes_are_an_error_on_every_replica():
    five, four = np.ones(5, np.int64), np.ones(4, np.int64)
    assert [str(error) for error in _run([[five, four], [five]])] == [
        "samples_per_class: the replicas give different numbers of classes (on this worker: [5, 4]); every replica "
        "must count the same classes",
        "samples_per_class: the replicas give different numbers of classes (on this worker: [5]); every replica "
        "must count the same classes",
    ]
    # the sums of C and C**2 tell every difference apart, also one that keeps the mean of C
    for sizes in ([3, 5], [2, 4, 3], [1, 1, 2], [4, 2, 2, 4]):
        results = _run([[np.ones(size, np.int64)] for size in sizes], peer="process", peers="processes")
        for size, error in zip(sizes, results, strict=True):
            assert type(error) is ValueError
            assert str(error).startswith("samples_per_class: the processes give different numbers of classes")
            assert f"(on this worker: [{size}])" in str(error)


def test_one_replica_sums_its_own_counts_and_leaves_the_argument_unchanged():
    given = [np.array([2, 0, 7], dtype=np.int32)]
    seen = []

    def all_sum(rows):
        seen.append([row.tolist() for row in rows])
        return np.sum(rows, axis=0)

    got = sum_over_replicas(lambda: given, 1, 1, all_sum)
    assert seen == [[[3, 9, 0]], [[2, 0, 7]]]  # the header (C, C**2, invalid), then the counts
    assert got.dtype == np.int64 and got.tolist() == [2, 0, 7]
    got[0] = 100
    assert given[0].tolist() == [2, 0, 7]


@pytest.mark.parametrize(
    "labels, kwargs, error, message",
    [
        ([[0, 1, 1]], dict(multi_label="False"), ValueError, r"^multi_label: must be one of \[True, False, None"),
        ([0, 1], dict(progress="no"), ValueError, r"^progress: must be one of \[None, True, False\]"),
        ([[0, 1], [1]], {}, TypeError, r"^labels: must be an array or a \(nested\) list of numbers"),
        (
            np.array([0, 2**64 - 1], np.uint64),
            {},
            ValueError,
            r"^labels: must be in \[0, 3\), got \[18446744073709551615\]",
        ),
    ],
    ids=["multi_label-string", "progress-string", "ragged", "uint64-max"],
)
def test_count_names_what_is_wrong(labels, kwargs, error, message):
    """A truthy string does not switch to multi-hot counting, and a label is reported as given (uint64's largest
    is not -1)."""
    with pytest.raises(error, match=message):
        cbloss.count_samples_per_class(labels, 3, **kwargs)


@pytest.mark.parametrize("multi_label", [True, "class", "sample"])
def test_count_takes_the_loss_options_multi_label_values(multi_label):
    assert cbloss.count_samples_per_class([[0, 1, 1], [1, 1, 0]], 3, multi_label=multi_label).tolist() == [1, 2, 1]
    assert cbloss.count_samples_per_class([0, 1, 1], 3, multi_label=None).tolist() == [1, 2, 0]
