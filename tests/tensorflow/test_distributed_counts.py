"""all_reduce_counts under tf.distribute, for real: a MirroredStrategy over two logical CPUs (configured in a fresh
interpreter, before TensorFlow starts, so that no other test sees them) sums per-replica counts of uneven shares
of a long-tailed dataset, and the result equals counting the whole dataset in one process; the examples of the
docstring and of docs/tensorflow.md run there as written. Also: invalid counts and different numbers of classes
fail, and with the default strategy the counts come back unchanged."""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cbloss

tf = pytest.importorskip("tensorflow")
from cbloss.adapters.tensorflow import all_reduce_counts  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
C = 5
# 19 long-tailed labels (8, 5, 3, 2, 1 of the classes), shuffled: batches of 8 split 4/4, 4/4 and 2/1 over two
# replicas, so the replicas' shares differ.
LABELS = np.random.default_rng(0).permutation(np.repeat(np.arange(C), [8, 5, 3, 2, 1])).tolist()
SPLIT = 3  # the explicit shares: replica 0 gets the first 3 labels, replica 1 the other 16
MULTI_HOT = (np.random.default_rng(1).random((19, C)) < np.array([0.8, 0.5, 0.3, 0.15, 0.05])).astype(int).tolist()

# 42 labels of 10 long-tailed classes, for the example of docs/tensorflow.md
DOC_LABELS = np.random.default_rng(2).permutation(np.repeat(np.arange(10), [10, 8, 6, 5, 4, 3, 2, 2, 1, 1])).tolist()

SCRIPT = r"""
import doctest, json, os, sys
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import cbloss
import cbloss.adapters.tensorflow as cbtf
from cbloss.adapters.tensorflow import all_reduce_counts

C, SPLIT, LABELS, MULTI_HOT, DOC_LABELS = json.loads(sys.argv[1])
strategy = tf.distribute.MirroredStrategy([device.name for device in tf.config.list_logical_devices("CPU")[:2]])
assert strategy.num_replicas_in_sync == 2
local = strategy.experimental_local_results
results = {}


def listed(value):
    return np.asarray(value).tolist()


def error(call):
    try:
        call()
    except (ValueError, TypeError, RuntimeError) as raised:
        return [type(raised).__name__, str(raised)]
    return None


def count(y, total):  # on each replica: its part of the batch, added to its running total
    return total + cbloss.count_samples_per_class(y, C)


# 1. a distributed dataset: per-replica running totals from strategy.run, one all-reduce at the end
total = strategy.run(lambda: np.zeros(C, np.int64))
for y in strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices(LABELS).batch(8)):
    total = strategy.run(count, args=(y, total))
results["dataset_shares"] = [listed(part) for part in local(total)]
results["dataset"] = listed(all_reduce_counts(total, strategy))

# 2. (inputs, labels) batches, each batch's per-replica counts summed as it comes
pairs = tf.data.Dataset.from_tensor_slices((np.zeros((len(LABELS), 2), np.float32), LABELS)).batch(8)
summed = np.zeros(C, np.int64)
for _, y in strategy.experimental_distribute_dataset(pairs):
    counted = strategy.run(lambda y: cbloss.count_samples_per_class(y, C), args=(y,))
    summed = summed + all_reduce_counts(counted, strategy)
results["pairs"] = listed(summed)

# 3. explicit uneven shares (3 and 16 labels), counted inside strategy.run
def share(rows):
    return strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(rows[:SPLIT] if ctx.replica_id_in_sync_group == 0 else rows[SPLIT:])
    )


labels = share(LABELS)
per_replica = strategy.run(lambda y: cbloss.count_samples_per_class(y, C), args=(labels,))
results["uneven_shares"] = [listed(part) for part in local(per_replica)]
results["uneven"] = listed(all_reduce_counts(per_replica, strategy))
multi_hot = strategy.run(lambda t: cbloss.count_samples_per_class(t, C, multi_label=True), args=(share(MULTI_HOT),))
results["multi_hot"] = listed(all_reduce_counts(multi_hot, strategy))
parts = [cbloss.count_samples_per_class(part, C) for part in local(labels)]
results["list"] = listed(all_reduce_counts(parts, strategy))
with strategy.scope():  # strategy=None: the strategy of the scope
    results["tuple_in_scope"] = listed(all_reduce_counts(tuple(tf.constant(part) for part in parts)))
    results["per_replica_in_scope"] = listed(all_reduce_counts(per_replica))
results["host_counts"] = listed(all_reduce_counts(cbloss.count_samples_per_class(LABELS, C), strategy))
results["int32_float_parts"] = listed(all_reduce_counts([parts[0].astype(np.int32), parts[1].astype(float)], strategy))

# 4. errors, then a sum that still comes out right
results["mismatch"] = error(lambda: all_reduce_counts([np.ones(C, np.int64), np.ones(C - 1, np.int64)], strategy))
results["invalid"] = error(lambda: all_reduce_counts([parts[0], -parts[1]], strategy))
results["three_parts"] = error(lambda: all_reduce_counts(parts + parts[:1], strategy))
results["no_strategy"] = error(lambda: all_reduce_counts(per_replica))
results["in_run"] = error(lambda: strategy.run(lambda: all_reduce_counts(np.ones(C, np.int64))))
results["after_errors"] = listed(all_reduce_counts(per_replica, strategy))

# 5. docs/tensorflow.md's example as written, on this strategy, over 10 classes
page = open(os.path.join("docs", "tensorflow.md")).read()
block = page.split("## Counting classes across replicas", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
assert block.count("tf.distribute.MirroredStrategy()") == 1
dataset = tf.data.Dataset.from_tensor_slices((np.zeros((len(DOC_LABELS), 2), np.float32), DOC_LABELS)).batch(8)
namespace = {"STRATEGY": strategy, "dataset": dataset}
exec(block.replace("tf.distribute.MirroredStrategy()", "STRATEGY"), namespace)
results["docs"] = listed(namespace["samples_per_class"])
results["docs_loss"] = type(namespace["loss"]).__name__

# 6. the docstring example, under the scope: tf.distribute.get_strategy() there is the MirroredStrategy
with strategy.scope():
    runner = doctest.DocTestRunner()
    for test in doctest.DocTestFinder().find(all_reduce_counts, "all_reduce_counts", globs={}):
        runner.run(test)
results["doctest"] = [runner.summarize(verbose=False).attempted, runner.failures]
print("RESULTS " + json.dumps(results))
"""


@pytest.fixture(scope="module")
def mirrored() -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    data = json.dumps([C, SPLIT, LABELS, MULTI_HOT, DOC_LABELS])
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, data], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULTS "))
    return json.loads(line.removeprefix("RESULTS "))


def test_summed_counts_equal_counting_the_whole_dataset_in_one_process(mirrored):
    whole = cbloss.count_samples_per_class(tf.data.Dataset.from_tensor_slices(LABELS).batch(8), C)
    assert whole.tolist() == np.bincount(LABELS, minlength=C).tolist() == [8, 5, 3, 2, 1]
    # the replicas' shares differ, and neither has the whole dataset's counts
    first, second = mirrored["dataset_shares"]
    assert (sum(first), sum(second)) == (10, 9) and whole.tolist() not in (first, second)
    first, second = mirrored["uneven_shares"]
    assert (sum(first), sum(second)) == (SPLIT, len(LABELS) - SPLIT)
    for name in ("dataset", "pairs", "uneven", "list", "tuple_in_scope", "per_replica_in_scope", "int32_float_parts"):
        assert mirrored[name] == whole.tolist(), name
    assert mirrored["after_errors"] == whole.tolist()


def test_summed_multi_hot_counts_equal_the_whole_dataset(mirrored):
    whole = cbloss.count_samples_per_class(np.array(MULTI_HOT), C, multi_label=True)
    assert whole.tolist() == np.sum(MULTI_HOT, axis=0).tolist()
    assert mirrored["multi_hot"] == whole.tolist()


def test_host_counts_of_a_single_worker_come_back_unchanged(mirrored):
    assert mirrored["host_counts"] == [8, 5, 3, 2, 1]


def test_errors_under_the_strategy(mirrored):
    assert mirrored["mismatch"] == [
        "ValueError",
        f"samples_per_class: the replicas give different numbers of classes (on this worker: [{C}, {C - 1}]); "
        "every replica must count the same classes",
    ]
    kind, message = mirrored["invalid"]
    assert kind == "ValueError" and message.startswith("samples_per_class: counts must be finite and >= 0")
    assert mirrored["three_parts"] == [
        "ValueError",
        "samples_per_class: 3 per-replica counts were given, but the strategy has 2 replica(s) on this worker (pass "
        "the strategy that made them)",
    ]
    kind, message = mirrored["no_strategy"]
    assert kind == "ValueError" and message.startswith("strategy: a per-replica value needs the strategy")
    kind, message = mirrored["in_run"]
    assert kind == "RuntimeError" and message.startswith("all_reduce_counts: call it in cross-replica context")


def test_docs_example_runs_on_two_replicas(mirrored):
    assert mirrored["docs"] == np.bincount(DOC_LABELS, minlength=10).tolist() == [10, 8, 6, 5, 4, 3, 2, 2, 1, 1]
    assert mirrored["docs_loss"] == "ClassBalancedLoss"


def test_docstring_example_runs_on_two_replicas(mirrored):
    attempted, failed = mirrored["doctest"]
    assert attempted >= 8 and failed == 0


@pytest.mark.parametrize(
    "given",
    [
        np.array([9, 0, 3], dtype=np.int64),
        np.array([9, 0, 3], dtype=np.uint16),
        np.array([9.0, 0.0, 3.0], dtype=np.float32),
        tf.constant([9, 0, 3], dtype=tf.int32),
        tf.constant([9.0, 0.0, 3.0], dtype=tf.float64),
        [9, 0, 3],
        (np.array([9, 0, 3]),),  # the parts of the default strategy's one replica
    ],
    ids=["int64", "uint16", "float32", "tf-int32", "tf-float64", "list", "one-part"],
)
def test_default_strategy_gives_the_counts_unchanged(given):
    got = all_reduce_counts(given)
    assert isinstance(got, np.ndarray) and got.dtype == np.int64 and got.tolist() == [9, 0, 3]
    got[0] = 100  # the result is the caller's: writing it leaves the argument as it was
    assert np.asarray(given).ravel().tolist() == [9, 0, 3]
    assert all_reduce_counts(given, tf.distribute.get_strategy()).tolist() == [9, 0, 3]


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [
        ([[1, 2], [3, 4]], ValueError, r"^samples_per_class: 2 per-replica counts were given, but the strategy has 1"),
        (np.ones((2, 2)), ValueError, r"^samples_per_class: must be a non-empty 1-D sequence, got shape \(2, 2\)"),
        ([], ValueError, r"^samples_per_class: must be a non-empty 1-D sequence"),
        ([3, -1], ValueError, r"^samples_per_class: counts must be finite and >= 0; classes \[1\] have \[-1.0\]"),
        ([3, 1.5], ValueError, r"^samples_per_class: counts must be whole numbers .*classes \[1\] have \[1.5\]"),
        ([3, 2.0**53], ValueError, r"^samples_per_class: counts must be whole numbers \(below 2\*\*53\)"),
        (["a", "b"], TypeError, r"^samples_per_class: must be real numbers"),
    ],
    ids=["two-parts", "2-D", "empty", "negative", "fractional", "too-large", "strings"],
)
def test_invalid_counts_name_the_argument(given, error, message):
    with pytest.raises(error, match=message):
        all_reduce_counts(given)


def test_not_in_a_tf_function():
    @tf.function
    def traced():
        return all_reduce_counts(tf.constant([1, 2]))

    # autograph prefixes the traceback of the traced code to the message
    with pytest.raises(RuntimeError, match=r"RuntimeError: all_reduce_counts: it returns NumPy, so it runs eagerly"):
        traced()


def test_docstring_example_runs_with_the_default_strategy():
    tests = doctest.DocTestFinder().find(all_reduce_counts, "all_reduce_counts", globs={})
    runner = doctest.DocTestRunner()
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).attempted >= 8 and runner.failures == 0


def test_counts_are_summed_eagerly_not_inside_a_tf_function():
    """all_reduce_counts returns NumPy: inside a tf.function it would have no values to return, so it says where
    to call it instead (AutoGraph puts the place in the graph before the message)."""
    from cbloss.adapters.tensorflow import all_reduce_counts

    with pytest.raises(RuntimeError, match=r"all_reduce_counts: it returns NumPy, so it runs eagerly; call it outside"):
        tf.function(lambda counts: all_reduce_counts(counts))(tf.constant([1, 2, 3], dtype=tf.int64))
