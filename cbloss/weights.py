"""Class-balanced weights ``w_i = 1 / E(n_i, beta) = (1 - beta) / (1 - beta**n_i)`` and class counts."""

from __future__ import annotations

import functools
import numbers
from typing import TYPE_CHECKING, Any

import numpy as np

from ._namespace import as_array, check_unmasked, is_array, real_to_numpy
from .effective_number import effective_number
from .options import weight_options, with_options_doc
from .validation import (
    check_axis,
    check_beta,
    check_choice,
    check_num_classes,
    labels_out_of_range,
    multi_hot_counting,
    real_on_host,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .options import WeightKwargs

__all__ = ["class_balanced_weights", "count_samples_per_class"]


def _counts_as_float64(samples_per_class: Any) -> np.ndarray:
    counts = real_on_host("samples_per_class", samples_per_class)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"samples_per_class: must be a non-empty 1-D sequence, got shape {counts.shape}")
    bad = ~np.isfinite(counts) | (counts < 0)
    if bad.any():
        raise ValueError(
            f"samples_per_class: counts must be finite and >= 0; classes {np.flatnonzero(bad).tolist()} "
            f"have {counts[bad].tolist()}"
        )
    return counts


def whole_counts(samples_per_class: Any) -> np.ndarray:
    """``samples_per_class`` as a new int64 NumPy array, checked: a non-empty 1-D sequence of whole numbers >= 0
    (the class counts' check, then integrality). The adapters' ``all_reduce_counts`` sum these."""
    counts = _counts_as_float64(samples_per_class)
    # float64 holds every whole number below 2**53 exactly, far more samples than any data set has
    fractional = (counts != np.floor(counts)) | (counts >= 2.0**53)
    if fractional.any():
        raise ValueError(
            f"samples_per_class: counts must be whole numbers (below 2**53); classes "
            f"{np.flatnonzero(fractional).tolist()} have {counts[fractional].tolist()}"
        )
    return counts.astype(np.int64)


@with_options_doc
def class_balanced_weights(samples_per_class: Any, beta: float, **options: Unpack[WeightKwargs]) -> np.ndarray:
    """Per-class weights ``w_i = 1 / E_{n_i} = (1 - beta) / (1 - beta**n_i)``, in float64 on the host
    (docs/conventions.md §2-§3).

    ``beta = 0`` gives equal weights; ``beta = 1`` gives inverse-frequency weights ``1 / n_i``. With
    ``normalize="classes"`` the weights sum to ``C``; with ``"samples"`` the mean weight over the training set is 1
    (``sum_i n_i w_i = sum_i n_i``). A class with count 0 raises, naming it, unless ``zero_count="zero"``: it then
    gets weight 0 and the normalisation runs over the classes that have samples.

    Args:
        samples_per_class: the (C,) counts ``n_i`` (any array or sequence; finite, >= 0).
        beta: in [0, 1]; ``beta = (N - 1) / N`` for a feature-space volume ``N``.
        **options: the weight options below.

    Options:
    {weight_options}

    Returns:
        A float64 NumPy array of length ``C``.

    Example:
        >>> import cbloss
        >>> cbloss.class_balanced_weights([100, 10, 1], beta=0.9).round(4).tolist()
        [0.2393, 0.3674, 2.3932]
    """
    beta = check_beta(beta)
    chosen = weight_options(**options)
    normalize, zero_count = chosen["normalize"], chosen["zero_count"]
    counts = _counts_as_float64(samples_per_class)
    present = counts > 0
    if not present.all():
        if zero_count == "error":
            raise ValueError(
                f"samples_per_class: classes {np.flatnonzero(~present).tolist()} have 0 samples, so their "
                "weight 1/E(0) is infinite; pass zero_count='zero' to give them weight 0"
            )
        if not present.any():
            raise ValueError("samples_per_class: every class has 0 samples")
    weights = np.zeros_like(counts)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked below, and named
        weights[present] = 1.0 / effective_number(counts[present], beta)
        if normalize == "classes":
            weights *= present.sum() / weights.sum()
        elif normalize == "samples":
            weights *= counts.sum() / (counts * weights).sum()
    if not np.isfinite(weights).all():  # counts near float64's limits: the sums or 1 / E overflow
        raise ValueError(f"samples_per_class: the weights overflow float64 for these counts, got {weights.tolist()}")
    return weights


def _host_batch(batch: Any) -> np.ndarray:
    """One batch of labels as a host NumPy array (any framework's array, or a (nested) list of numbers)."""
    check_unmasked(batch, "labels")
    host = real_to_numpy(batch if hasattr(batch, "shape") else as_array(batch, "labels"))
    if host.dtype.kind == "O":  # what NumPy makes of an array without a rectangular shape (a tf.RaggedTensor)
        raise TypeError(
            f"labels: must be a rectangular array, got {type(batch).__name__} (of a ragged tensor, pass its "
            ".flat_values)"
        )
    return host


def _count_indices(batch: Any, num_classes: int) -> np.ndarray:
    labels = _host_batch(batch)
    if labels.size and labels.dtype.kind not in "iu":  # named as given (bfloat16 is read through float32)
        raise TypeError(f"labels: must be integer class indices, got dtype {getattr(batch, 'dtype', labels.dtype)}")
    labels = labels.ravel()
    out_of_range = labels_out_of_range(np, labels, num_classes, None)  # in their own dtype: uint64 never wraps
    if out_of_range.any():
        raise ValueError(f"labels: must be in [0, {num_classes}), got {np.unique(labels[out_of_range]).tolist()[:8]}")
    return np.bincount(labels.astype(np.int64, copy=False), minlength=num_classes)


def _count_multi_hot(batch: Any, num_classes: int, axis: int = -1) -> np.ndarray:
    targets = _host_batch(batch)
    if not (targets.ndim and -targets.ndim <= axis < targets.ndim and targets.shape[axis] == num_classes):
        raise ValueError(
            f"labels: multi-hot targets must have {num_classes} classes along axis {axis}, got {targets.shape}"
        )
    targets = np.moveaxis(targets, axis, -1)
    if targets.dtype.kind not in "biuf" or not np.isin(targets, (0, 1)).all():
        raise ValueError("labels: multi-hot targets to count must be 0/1 (bool, integer or floating)")
    return targets.reshape(-1, num_classes).sum(axis=0, dtype=np.int64)


def _is_batch(labels: Any) -> bool:
    """One array of any framework, or a (nested) list of numbers, rather than an iterable of batches: a list of
    arrays or of ``(inputs, labels)`` pairs is a pipeline (its items stacked, inputs shaped like the labels would
    read as labels)."""
    if is_array(labels) or (hasattr(labels, "shape") and hasattr(labels, "dtype")):
        return True
    if isinstance(labels, numbers.Number):  # one label, as a Python number (docs/conventions.md §6.1)
        return True
    return isinstance(labels, (list, tuple)) and _numbers_only(labels)


def _numbers_only(values: list | tuple) -> bool:
    return all(_numbers_only(v) if isinstance(v, (list, tuple)) else isinstance(v, numbers.Number) for v in values)


def _labels_of(batch: Any) -> Any:
    """The labels of one item of a data pipeline: a batch of labels itself, the second entry of an ``(inputs,
    labels, ...)`` tuple or list (Keras's ``(x, y)`` and ``(x, y, sample_weight)``, a PyTorch DataLoader's
    ``(input, target, ...)``), or the first of the ``"labels"``, ``"label"``, ``"targets"``, ``"target"`` and ``"y"``
    entries of a dict."""
    if isinstance(batch, dict):
        for key in ("labels", "label", "targets", "target", "y"):
            if key in batch:
                return batch[key]
        keys = "'labels', 'label', 'targets', 'target' or 'y'"
        raise TypeError(f"labels: a dict batch needs a {keys} entry, got keys {sorted(batch)}")
    if isinstance(batch, (list, tuple)) and len(batch) >= 2:
        # arrays only, or inputs that are no numbers (an array, a dict) before the labels (a number or an array)
        if all(hasattr(part, "shape") for part in batch) or not _numbers_only(batch[:1]):
            return batch[1]
    return batch


def _dataset_targets(dataset: Any) -> np.ndarray | None:
    """A dataset's own label array when it has one (torchvision-style ``targets``/``labels``), read without
    loading a single input; for a ``Subset`` (nested ones too) the selected ones, in the ``Subset``'s order."""
    indices = None
    while dataset is not None and hasattr(dataset, "indices") and hasattr(dataset, "dataset"):
        selected = np.asarray(dataset.indices)
        indices = selected if indices is None else selected[indices]
        dataset = dataset.dataset
    if getattr(dataset, "target_transform", None) is not None:
        return None  # a pass yields the transformed labels, not these
    for name in ("targets", "labels"):
        targets = getattr(dataset, name, None)
        if targets is not None and not callable(targets):
            try:
                host = _host_batch(targets)
            except TypeError:  # no label array (class names, say): the dataset is iterated
                return None
            if host.ndim == 0 or (hasattr(dataset, "__len__") and len(host) != len(dataset)):
                return None
            return host if indices is None else host[indices]
    return None


def _as_indices(items: list[Any]) -> np.ndarray | None:
    """Sampler items as a 1-D int64 index array, or None when they are not integer indices."""
    if not items:
        return np.zeros(0, dtype=np.int64)
    try:
        indices = np.asarray(items)
    except (TypeError, ValueError, RuntimeError):
        return None
    if indices.ndim != 1 or indices.dtype.kind not in "iu":
        return None
    return indices.astype(np.int64, copy=False)


def _loader_indices(loader: Any) -> np.ndarray | None:
    """The dataset indices one pass of a ``DataLoader`` reads, in order: the concatenated index lists of its
    ``batch_sampler`` (which drops the last partial batch under ``drop_last``), or its ``sampler``'s indices when
    it does not batch. None when they cannot be known without loading: an ``IterableDataset``, or a sampler whose
    items are not integer indices."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and isinstance(loader, torch.utils.data.DataLoader):
        # An IterableDataset has no indices: its sampler yields None without end.
        if isinstance(loader.dataset, torch.utils.data.IterableDataset):
            return None
    batch_sampler = getattr(loader, "batch_sampler", None)
    if batch_sampler is not None:
        try:
            items = [index for batch in batch_sampler for index in batch]
        except TypeError:  # a batch that is not a sequence of indices
            return None
        return _as_indices(items)
    sampler = getattr(loader, "sampler", None)
    return None if sampler is None else _as_indices(list(sampler))


def _collates_as_given(loader: Any) -> bool:
    """Whether a ``DataLoader`` hands the dataset's labels over as they are: PyTorch's default collation (or none);
    a ``collate_fn`` of the user's may change them."""
    import sys

    torch = sys.modules.get("torch")
    collate = getattr(loader, "collate_fn", None)
    return torch is None or collate in (None, torch.utils.data.default_collate, torch.utils.data.default_convert)


def _pipeline_targets(labels: Any) -> np.ndarray | None:
    """The labels one pass over ``labels`` yields, read from its dataset's label array without loading inputs:
    for a dataset its whole array, for a ``DataLoader`` the array at the indices its sampler yields. None when
    they cannot be read that way (then the pipeline is iterated)."""
    if not hasattr(labels, "batch_size"):
        return _dataset_targets(labels)
    if not _collates_as_given(labels):
        return None
    targets = _dataset_targets(getattr(labels, "dataset", None))
    if targets is None:
        return None
    indices = _loader_indices(labels)
    return None if indices is None else targets[indices]


class _Progress:
    """A one-line count of batches on stderr, for long passes over a pipeline; silent unless ``enabled``."""

    def __init__(self, enabled: bool | None):
        import sys

        self.stream = sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else bool(enabled)
        self.batches = 0

    def step(self) -> None:
        self.batches += 1
        if self.enabled and (self.batches < 10 or self.batches % 50 == 0):
            self.stream.write(f"\rcounting labels: {self.batches} batches")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.batches:
            self.stream.write(f"\rcounting labels: {self.batches} batches, done\n")
            self.stream.flush()


def count_samples_per_class(
    labels: Any,
    num_classes: int,
    *,
    multi_label: bool | str | None = False,
    axis: int = -1,
    progress: bool | None = None,
) -> np.ndarray:
    """Number of samples of each class, as an int64 NumPy array of length ``num_classes``.

    Args:
        labels: integer class indices of any supported framework (any shape), or, with ``multi_label``, 0/1
            multi-hot targets with the classes along ``axis`` (each positive counts); or a data pipeline: a
            PyTorch ``DataLoader`` or dataset, a ``tf.data.Dataset``, or any iterable of batches (a list or
            tuple of arrays too). A batch is the labels themselves, an ``(inputs, labels, ...)`` tuple or list
            (its second entry, as in Keras's ``(x, y, sample_weight)``: arrays only, or inputs that are no
            numbers, such as an array or a dict, before labels that may be a number), or a dict with a
            ``"labels"``, ``"label"``, ``"targets"``, ``"target"`` or ``"y"`` entry. What one pass over the
            pipeline yields is counted. When the dataset has per-sample ``targets``/``labels`` (also through
            nested ``Subset``) and no ``target_transform``, they are read without loading inputs: a
            ``DataLoader``'s (with PyTorch's default collation) at the indices its sampler or batch sampler yields
            (a ``DistributedSampler`` gives this rank's shard, ``drop_last`` drops the last partial batch); an
            ``IterableDataset`` or a sampler whose items are not indices is iterated instead.
        num_classes: ``C``.
        multi_label: count the positives of multi-hot targets instead of class indices (True, or the loss
            option's "class" or "sample"; False or None: class indices).
        axis: the class axis of multi-hot targets: the last (-1, JAX's and TensorFlow's default), or 1 for
            PyTorch's ``(N, C, d1, ...)`` targets; a ``ValueError`` where it does not hold ``num_classes``.
        progress: show a count of batches on stderr while iterating a pipeline; None (default) shows it only
            when stderr is a terminal.

    Labels outside ``[0, num_classes)`` (or multi-hot values other than 0 and 1) raise. A random sampler counts
    one draw: a ``WeightedRandomSampler`` (or any sampler with replacement) draws again, and counts again, on each
    pass. Under data parallelism each rank counts its own shard; ``all_reduce_counts`` in
    ``cbloss.adapters.torch``, ``cbloss.adapters.jax`` or ``cbloss.adapters.tensorflow`` sums the counts across
    ranks.

    Example:
        >>> import cbloss
        >>> cbloss.count_samples_per_class([0, 2, 2, 1, 2], 3).tolist()
        [1, 1, 3]
        >>> cbloss.count_samples_per_class([[1, 0, 1], [0, 0, 1]], 3, multi_label=True).tolist()
        [1, 0, 2]
    """
    num_classes = check_num_classes(num_classes)
    check_choice("progress", progress, (None, True, False))
    axis = check_axis(axis)
    multi_hot = multi_hot_counting(multi_label)
    if axis != -1 and not multi_hot:
        raise ValueError(f"axis: applies to multi-hot targets (multi_label=True), got {axis} for class indices")
    count = functools.partial(_count_multi_hot, axis=axis) if multi_hot else _count_indices
    if _is_batch(labels):
        return count(labels, num_classes)
    targets = _pipeline_targets(labels)
    if targets is not None:
        return count(targets, num_classes)
    try:
        batches = iter(labels)  # a map-style dataset (items by index) iterates too
    except TypeError:
        raise TypeError(f"labels: must be an array or an iterable of label batches, got {type(labels)}") from None
    total = np.zeros(int(num_classes), dtype=np.int64)
    bar = _Progress(progress)
    try:
        for batch in batches:
            total += count(_labels_of(batch), int(num_classes))
            bar.step()
    finally:
        bar.close()
    return total
