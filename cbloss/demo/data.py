"""Long-tailed splits of the bundled handwritten digits, built the way CIFAR-LT is built.

For ``C`` classes, a maximum per-class count ``n_max`` and an imbalance factor ``mu = n_max / n_min``, class
``i`` of a (random, per-seed) class order keeps ``n_i = floor(n_max * mu**(-i / (C - 1)))`` training samples
(Cui et al. 2019, Sec. 5.1). The test set is balanced: the same number of held-out samples from every class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def long_tailed_counts(n_max: int, imbalance: float, num_classes: int) -> np.ndarray:
    """``n_i = floor(n_max * imbalance**(-i / (C - 1)))`` for ``i = 0 .. C-1`` (at least 1), int64."""
    if num_classes < 2:
        raise ValueError(f"num_classes: must be at least 2, got {num_classes}")
    i = np.arange(num_classes, dtype=np.float64)
    counts = np.floor(n_max * float(imbalance) ** (-i / (num_classes - 1)) + 1e-9)
    return np.maximum(counts, 1).astype(np.int64)


@dataclass(frozen=True)
class Pool:
    """A seed's shuffled data: a balanced test set and, per class, the remaining samples in random order."""

    x_test: np.ndarray  # (C * test_per_class, D) float32
    y_test: np.ndarray  # int64
    train_by_class: tuple[np.ndarray, ...]  # per class: (n_available, D) float32, shuffled
    class_order: np.ndarray  # class_order[i] is the class that gets the i-th largest count

    @property
    def num_classes(self) -> int:
        return len(self.train_by_class)


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray  # float32
    y_train: np.ndarray  # int64
    counts: np.ndarray  # (C,) training samples per class (by class index)
    class_order: np.ndarray  # classes from the most to the least frequent


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 8x8 digits as float32 features in [0, 1] and int64 labels (imported lazily: scikit-learn)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:  # pragma: no cover - the demo extra installs it
        raise RuntimeError(
            "the demo needs scikit-learn (its bundled digits data): pip install 'class-balanced-loss[demo]'"
        ) from error
    digits = load_digits()
    return (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int64)


def make_pool(x: np.ndarray, y: np.ndarray, seed: int, test_per_class: int) -> Pool:
    """Hold out ``test_per_class`` random samples of every class; shuffle the rest; draw a random class order."""
    rng = np.random.default_rng([seed, 0])
    num_classes = int(y.max()) + 1
    test_idx, train = [], []
    for c in range(num_classes):
        idx = rng.permutation(np.flatnonzero(y == c))
        if idx.size <= test_per_class:
            raise ValueError(f"class {c} has {idx.size} samples, not more than test_per_class={test_per_class}")
        test_idx.append(idx[:test_per_class])
        train.append(x[idx[test_per_class:]])
    test = np.concatenate(test_idx)
    return Pool(x[test], y[test], tuple(train), rng.permutation(num_classes))


def long_tailed_split(pool: Pool, n_max: int, imbalance: float) -> Split:
    """The training split of imbalance factor ``imbalance``: the class of rank ``i`` keeps the first ``n_i`` of
    its shuffled samples (so the splits of one seed are nested)."""
    counts_by_rank = long_tailed_counts(n_max, imbalance, pool.num_classes)
    counts = np.zeros(pool.num_classes, dtype=np.int64)
    xs, ys = [], []
    for rank, c in enumerate(pool.class_order):
        n = int(counts_by_rank[rank])
        available = pool.train_by_class[c]
        if n > len(available):
            raise ValueError(f"n_max={n_max} is larger than the {len(available)} training samples of class {c}")
        xs.append(available[:n])
        ys.append(np.full(n, c, dtype=np.int64))
        counts[c] = n
    return Split(np.concatenate(xs), np.concatenate(ys), counts, pool.class_order.copy())


def head_tail_classes(class_order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Head = the most frequent third of the classes, tail = the least frequent third (``C // 3`` each, at
    least 1); the middle classes are in neither."""
    k = max(1, math.floor(len(class_order) / 3))
    return class_order[:k], class_order[-k:]
