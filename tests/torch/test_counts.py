"""count_samples_per_class on PyTorch inputs (the framework-free cases are in tests/test_weights.py)."""

from __future__ import annotations

import numpy as np
import pytest

import cbloss
from tests.framework_checks import (
    check_count_multi_hot_bfloat16,
    check_validate_labels,
    check_weights_beyond_float32,
)
from tests.test_weights import LABELS, _check_counts


def test_count_from_torch():
    torch = pytest.importorskip("torch")
    _check_counts(cbloss.count_samples_per_class(torch.as_tensor(LABELS), 5))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.zeros(6, 1), torch.as_tensor(LABELS.reshape(-1))), batch_size=4
    )
    _check_counts(cbloss.count_samples_per_class((y for _, y in loader), 5))


def test_count_from_a_dataloader_reads_targets_without_loading_inputs():
    torch = pytest.importorskip("torch")

    class Images(torch.utils.data.Dataset):
        def __init__(self):
            self.targets = torch.as_tensor(LABELS.reshape(-1))

        def __len__(self):
            return len(self.targets)

        def __getitem__(self, index):
            raise AssertionError("an image was loaded")

    loader = torch.utils.data.DataLoader(Images(), batch_size=4)
    _check_counts(cbloss.count_samples_per_class(loader, 5))
    subset = torch.utils.data.Subset(Images(), [0, 2, 4])
    want = torch.bincount(torch.as_tensor(LABELS.reshape(-1))[[0, 2, 4]], minlength=5).numpy()
    assert cbloss.count_samples_per_class(torch.utils.data.DataLoader(subset), 5).tolist() == want.tolist()


def test_count_iterates_a_dataloader_of_pairs():
    torch = pytest.importorskip("torch")
    dataset = torch.utils.data.TensorDataset(torch.zeros(6, 3), torch.as_tensor(LABELS.reshape(-1)))
    _check_counts(cbloss.count_samples_per_class(torch.utils.data.DataLoader(dataset, batch_size=4), 5))


def test_count_iterates_a_map_style_dataset_without_targets():
    """A map-style dataset is iterable through its items (by index), even without ``__iter__`` or ``targets``."""
    torch = pytest.importorskip("torch")
    dataset = torch.utils.data.TensorDataset(torch.zeros(LABELS.size, 3), torch.as_tensor(LABELS.reshape(-1)))
    _check_counts(cbloss.count_samples_per_class(dataset, 5))


def _yielded(loader):
    """What one pass over ``loader`` yields, counted by hand."""
    import torch

    return torch.bincount(torch.cat([torch.as_tensor(y).reshape(-1) for _, y in loader]), minlength=5).tolist()


def test_labels_a_pass_yields_are_counted_where_the_stored_ones_differ():
    """The stored ``targets`` are read only where a pass yields them unchanged: a ``target_transform`` (torchvision's)
    or a DataLoader's own ``collate_fn`` may change them, and a ``labels`` attribute may hold class names; then the
    pipeline is iterated. Items of a dataset without ``targets`` may be ``(tensor, int)`` pairs."""
    torch = pytest.importorskip("torch")
    stored = LABELS.reshape(-1).tolist()

    class Remapped(torch.utils.data.Dataset):
        targets = stored
        labels = ("cat", "dog", "fox", "owl", "yak")  # class names, not per-sample labels

        def __init__(self, target_transform=None):
            self.target_transform = target_transform

        def __len__(self):
            return len(stored)

        def __getitem__(self, index):
            label = stored[index] if self.target_transform is None else self.target_transform(stored[index])
            return torch.zeros(2), label

    def reversed_labels(batch):
        inputs, labels = torch.utils.data.default_collate(batch)
        return inputs, 4 - labels

    shifted = Remapped(target_transform=lambda y: (y + 1) % 5)
    for loader in (
        torch.utils.data.DataLoader(shifted, batch_size=4),
        torch.utils.data.DataLoader(Remapped(), batch_size=4, collate_fn=reversed_labels),
        torch.utils.data.DataLoader(torch.utils.data.Subset(shifted, [5, 0, 3]), batch_size=2),
    ):
        assert cbloss.count_samples_per_class(loader, 5).tolist() == _yielded(loader)
    assert cbloss.count_samples_per_class(shifted, 5).tolist() == _yielded(shifted)

    class NamedClasses(torch.utils.data.Dataset):  # labels: class names; items: (tensor, int)
        labels = ("cat", "dog")

        def __len__(self):
            return len(stored)

        def __getitem__(self, index):
            return torch.zeros(2), stored[index]

    _check_counts(cbloss.count_samples_per_class(NamedClasses(), 5))
    _check_counts(cbloss.count_samples_per_class(torch.utils.data.DataLoader(NamedClasses(), batch_size=4), 5))


# A DataLoader's sampler decides what one pass yields: the fast path (the dataset's ``targets`` at the sampler's
# indices) must count exactly what iterating the same loader counts.

C = 5
# 23 long-tailed labels (11, 6, 3, 2, 1 of the classes), shuffled: an odd length, so a DistributedSampler pads or
# drops a sample and a batch size of 4 leaves a partial last batch.
TAILED = np.random.default_rng(3).permutation(np.repeat(np.arange(C), [11, 6, 3, 2, 1]))


class _Images:
    """A torchvision-style dataset: its labels are in ``targets``, and loading an image is an error."""

    def __init__(self, targets):
        self.targets = targets

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        raise AssertionError("an image was loaded")


class _Pairs:
    """The same labels as (input, label) pairs and no ``targets``: counting it iterates the loader."""

    def __init__(self, targets):
        self.labels_by_index = targets

    def __len__(self):
        return len(self.labels_by_index)

    def __getitem__(self, index):
        return np.zeros(2, dtype=np.float32), self.labels_by_index[index]


def _generator(torch, seed=0):
    return torch.Generator().manual_seed(seed)


def _samplers(torch):
    """Loader options by name, built afresh for each dataset: seeded samplers draw the same indices each time."""
    data = torch.utils.data
    # weights favour the rarest classes, so a draw's counts differ from the dataset's
    favour_rare = (1.0 / np.bincount(TAILED, minlength=C))[TAILED]
    cases = {
        "sequential": lambda ds: {"sampler": data.SequentialSampler(ds)},
        "random": lambda ds: {"sampler": data.RandomSampler(ds, generator=_generator(torch))},
        "random-with-replacement": lambda ds: {
            "sampler": data.RandomSampler(ds, replacement=True, num_samples=30, generator=_generator(torch))
        },
        "shuffle": lambda ds: {"shuffle": True, "generator": _generator(torch)},
        "subset-random": lambda ds: {"sampler": data.SubsetRandomSampler([1, 4, 5, 9, 22], _generator(torch))},
        "subset-random-tensor": lambda ds: {
            "sampler": data.SubsetRandomSampler(torch.tensor([0, 3, 3, 8, 17]), _generator(torch))
        },
        "weighted": lambda ds: {
            "sampler": data.WeightedRandomSampler(
                favour_rare.tolist(), 40, replacement=True, generator=_generator(torch)
            )
        },
        "weighted-drop-last": lambda ds: {
            "sampler": data.WeightedRandomSampler(
                favour_rare.tolist(), 39, replacement=True, generator=_generator(torch)
            ),
            "drop_last": True,
        },
        "drop-last": lambda ds: {"drop_last": True},
        "shuffle-drop-last": lambda ds: {"shuffle": True, "generator": _generator(torch), "drop_last": True},
        "unbatched": lambda ds: {"batch_size": None, "sampler": data.RandomSampler(ds, generator=_generator(torch))},
        "batch-sampler": lambda ds: {"batch_size": 1, "batch_sampler": [[0, 1, 1], [22], [5, 6, 7, 8]]},
        "batch-sampler-drop-last": lambda ds: {
            "batch_size": 1,
            "batch_sampler": data.BatchSampler(data.RandomSampler(ds, generator=_generator(torch)), 5, drop_last=True),
        },
    }
    for rank in (0, 1):
        for shuffle in (False, True):
            for drop_last in (False, True):
                cases[f"distributed-rank{rank}-shuffle{shuffle}-drop_last{drop_last}"] = (
                    lambda ds, rank=rank, shuffle=shuffle, drop_last=drop_last: {
                        "sampler": data.DistributedSampler(
                            ds, num_replicas=2, rank=rank, shuffle=shuffle, seed=7, drop_last=drop_last
                        )
                    }
                )
    return cases


SAMPLERS = [
    "sequential",
    "random",
    "random-with-replacement",
    "shuffle",
    "subset-random",
    "subset-random-tensor",
    "weighted",
    "weighted-drop-last",
    "drop-last",
    "shuffle-drop-last",
    "unbatched",
    "batch-sampler",
    "batch-sampler-drop-last",
] + [
    f"distributed-rank{rank}-shuffle{shuffle}-drop_last{drop_last}"
    for rank in (0, 1)
    for shuffle in (False, True)
    for drop_last in (False, True)
]


def _loader(torch, dataset, options):
    return torch.utils.data.DataLoader(dataset, **{"batch_size": 4, **options})


def _iterated(loader):
    """The labels one pass of a loader of (input, label) pairs yields, concatenated."""
    return np.concatenate([np.asarray(y).reshape(-1) for _, y in loader])


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("targets_type", ["tensor", "list", "ndarray"])
def test_dataloader_targets_are_counted_at_the_sampled_indices(name, targets_type):
    torch = pytest.importorskip("torch")
    options = _samplers(torch)[name]
    targets = {"tensor": torch.as_tensor(TAILED), "list": TAILED.tolist(), "ndarray": TAILED}[targets_type]
    images, pairs = _Images(targets), _Pairs(TAILED)
    fast = cbloss.count_samples_per_class(_loader(torch, images, options(images)), C)
    seen = _iterated(_loader(torch, pairs, options(pairs)))
    by_iterating = cbloss.count_samples_per_class(_loader(torch, pairs, options(pairs)), C)
    _check_counts(by_iterating, np.bincount(seen, minlength=C))
    if name == "shuffle-drop-last":
        # Which samples the last partial batch drops depends on the pass's draw (a pass first draws its workers'
        # seed from the same generator): the counts are those of one valid draw, the same total as a pass.
        whole = np.bincount(TAILED, minlength=C)
        assert fast.sum() == len(seen) and np.all(fast <= whole), (fast, whole)
    else:
        _check_counts(fast, np.bincount(seen, minlength=C))


def test_the_samplers_change_what_is_counted():
    """Each case above counts something other than the whole dataset (so ignoring the sampler fails them),
    except the sequential and permuting samplers without drop_last, which yield every index once."""
    torch = pytest.importorskip("torch")
    whole = np.bincount(TAILED, minlength=C).tolist()
    cases = _samplers(torch)
    every_index_once = {"sequential", "random", "shuffle", "unbatched"}
    for name in SAMPLERS:
        images = _Images(torch.as_tensor(TAILED))
        got = cbloss.count_samples_per_class(_loader(torch, images, cases[name](images)), C).tolist()
        assert (got == whole) == (name in every_index_once), name


def test_distributed_shards_add_up_to_the_padded_or_trimmed_dataset():
    """Two ranks' shards: without drop_last the 23 samples are padded to 24 by repeating the first of the order;
    with drop_last one sample is left out. Each rank counts only its own shard."""
    torch = pytest.importorskip("torch")
    data = torch.utils.data
    images = _Images(torch.as_tensor(TAILED))
    for shuffle in (False, True):
        for drop_last in (False, True):
            shards = [
                cbloss.count_samples_per_class(
                    data.DataLoader(
                        images,
                        batch_size=4,
                        sampler=data.DistributedSampler(
                            images, num_replicas=2, rank=rank, shuffle=shuffle, seed=7, drop_last=drop_last
                        ),
                    ),
                    C,
                )
                for rank in (0, 1)
            ]
            assert [int(shard.sum()) for shard in shards] == ([11, 11] if drop_last else [12, 12])
            order = torch.randperm(len(TAILED), generator=_generator(torch, 7)).numpy() if shuffle else np.arange(23)
            kept = order[:22] if drop_last else np.concatenate([order, order[:1]])
            _check_counts(shards[0] + shards[1], np.bincount(TAILED[kept], minlength=C))


def test_nested_subsets_map_the_sampled_indices_through_every_subset():
    torch = pytest.importorskip("torch")
    data = torch.utils.data
    outer_indices, inner_indices = [4, 0, 2, 2, 6], [22, 21, 1, 3, 5, 7, 9]
    want_labels = TAILED[np.asarray(inner_indices)[outer_indices]]
    for options in ({}, {"shuffle": True}, {"drop_last": True}, {"batch_size": 2, "drop_last": True}):
        images = data.Subset(data.Subset(_Images(torch.as_tensor(TAILED)), inner_indices), outer_indices)
        pairs = data.Subset(data.Subset(_Pairs(TAILED), inner_indices), outer_indices)
        fast = cbloss.count_samples_per_class(_loader(torch, images, options), C)
        seen = _iterated(_loader(torch, pairs, options))
        _check_counts(fast, np.bincount(seen, minlength=C))
        kept = 4 if options.get("drop_last") else 5
        assert len(seen) == kept
        if not options.get("drop_last"):
            _check_counts(fast, np.bincount(want_labels, minlength=C))
    sampler = data.SubsetRandomSampler([0, 1, 4], generator=_generator(torch))
    images = data.Subset(data.Subset(_Images(torch.as_tensor(TAILED)), inner_indices), outer_indices)
    fast = cbloss.count_samples_per_class(data.DataLoader(images, batch_size=2, sampler=sampler), C)
    _check_counts(fast, np.bincount(want_labels[[0, 1, 4]], minlength=C))


def test_multi_hot_targets_are_counted_at_the_sampled_indices():
    torch = pytest.importorskip("torch")
    data = torch.utils.data
    multi_hot = np.random.default_rng(4).random((23, C)) < np.array([0.8, 0.5, 0.3, 0.15, 0.05])
    images, pairs = _Images(torch.as_tensor(multi_hot)), _Pairs(torch.as_tensor(multi_hot))
    for dataset_options in (
        lambda ds: {"sampler": data.DistributedSampler(ds, num_replicas=2, rank=1, shuffle=True, seed=7)},
        lambda ds: {"sampler": data.WeightedRandomSampler([1.0] * 23, 17, generator=_generator(torch))},
        lambda ds: {"drop_last": True},
    ):
        fast = cbloss.count_samples_per_class(_loader(torch, images, dataset_options(images)), C, multi_label=True)
        seen = np.concatenate([np.asarray(y) for _, y in _loader(torch, pairs, dataset_options(pairs))])
        _check_counts(fast, seen.sum(axis=0))
        assert fast.tolist() != multi_hot.sum(axis=0).tolist()


def test_without_indices_the_loader_is_iterated():
    """An IterableDataset, or a sampler whose items are not integer indices, cannot be read at indices: the loader
    is iterated and what it yields is counted, not its ``targets``."""
    torch = pytest.importorskip("torch")
    data = torch.utils.data

    class Stream(data.IterableDataset):
        targets = torch.as_tensor(TAILED)  # every sample, of which the stream yields only the first 7

        def __iter__(self):
            return iter((np.zeros(2, dtype=np.float32), int(label)) for label in TAILED[:7])

    _check_counts(
        cbloss.count_samples_per_class(data.DataLoader(Stream(), batch_size=3), C), np.bincount(TAILED[:7], minlength=C)
    )

    class Keyed(data.Dataset):
        """A dataset indexed by names, with a label array that the names do not index."""

        def __init__(self):
            self.targets = torch.as_tensor(TAILED)
            self.by_name = {"a": 4, "b": 4, "c": 0}

        def __len__(self):
            return len(self.by_name)

        def __getitem__(self, name):
            return np.zeros(2, dtype=np.float32), self.by_name[name]

    keyed = Keyed()
    loader = data.DataLoader(keyed, batch_size=2, sampler=list(keyed.by_name))
    _check_counts(cbloss.count_samples_per_class(loader, C), [1, 0, 0, 0, 2])


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_weights_from_half_precision_counts(dtype):
    """Counts in a half-precision tensor are real numbers: read exactly (through float32, as NumPy has no
    bfloat16), they give the weights of the same values in float64."""
    torch = pytest.importorskip("torch")
    counts = torch.tensor([300.0, 60.0, 12.0, 3.0, 0.5], dtype=getattr(torch, dtype))
    expected = cbloss.class_balanced_weights(counts.double().numpy(), 0.99)
    np.testing.assert_array_equal(cbloss.class_balanced_weights(counts, 0.99), expected)


def test_count_multi_hot_bfloat16_tensors():
    torch = pytest.importorskip("torch")
    check_count_multi_hot_bfloat16(lambda t: torch.as_tensor(t).to(torch.bfloat16))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_count_names_the_floating_dtype_given(dtype):
    """Floating class indices are refused with the dtype the caller passed, not the one they are read through."""
    torch = pytest.importorskip("torch")
    labels = torch.tensor([0.0, 1.0], dtype=getattr(torch, dtype))
    with pytest.raises(TypeError, match=rf"^labels: must be integer class indices, got dtype torch.{dtype}$"):
        cbloss.count_samples_per_class(labels, 3)


def test_validate_labels_reads_tensors():
    torch = pytest.importorskip("torch")
    check_validate_labels(torch.as_tensor, lambda t: torch.as_tensor(t).to(torch.bfloat16))


def test_weights_beyond_float32_are_named():
    torch = pytest.importorskip("torch")
    from cbloss.adapters.torch import class_balanced_loss

    check_weights_beyond_float32(lambda z, y, w: class_balanced_loss(z, y, w, reduction="sum"), torch.from_numpy)


def test_float8_counts_weights_and_targets_are_read_as_their_numbers():
    """Floating dtypes NumPy lacks (float8 here, bfloat16 elsewhere) are read through float32, which holds them."""
    torch = pytest.importorskip("torch")
    numbers = [1.0, 2.0, 4.0]
    as_float8 = torch.tensor(numbers).to(torch.float8_e4m3fn)
    np.testing.assert_array_equal(
        cbloss.class_balanced_weights(as_float8, 0.9), cbloss.class_balanced_weights(numbers, 0.9)
    )
    logits, labels = np.zeros((2, 3)), np.array([0, 2])
    assert cbloss.class_balanced_loss(logits, labels, as_float8) == cbloss.class_balanced_loss(logits, labels, numbers)
    cbloss.validate_labels(torch.tensor([[0.5, 0.5, 0.0]]).to(torch.float8_e4m3fn), 3)
    # summing to 1 + 1/256, exact in float8: within the 1e-2 of the floats below float32, eagerly in the adapter too
    from cbloss.adapters.torch import class_balanced_loss

    near = torch.tensor([[0.5, 0.25, 0.125, 0.125, 1 / 256]])
    cbloss.validate_labels(near.to(torch.float8_e4m3fn), 5)
    z = torch.zeros(1, 5)
    assert class_balanced_loss(z, near.to(torch.float8_e5m2)) == class_balanced_loss(z, near, validate=False)


def test_a_sampler_of_keys_that_are_no_indices_is_iterated():
    """A map-style dataset keyed by strings (or ragged tuples) keeps ``targets`` in its own order: read at the
    sampler's keys it would be wrong, so the loader is iterated and what it yields is counted."""
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, Dataset

    class Keyed(Dataset):
        keys: tuple = ("a", "b", "c")
        targets = (0, 1, 1)

        def __len__(self):
            return 3

        def __getitem__(self, key):
            return torch.zeros(2), self.targets[self.keys.index(key)]

    class Tupled(Keyed):
        keys = (("a", 1), ("b",), ("c", 2))

    loader = DataLoader(Keyed(), sampler=["c", "a", "b", "c", "a"], batch_size=2)
    assert cbloss.count_samples_per_class(loader, 2).tolist() == [2, 3]
    loader = DataLoader(Tupled(), sampler=[("c", 2), ("b",), ("a", 1)], batch_size=None)
    assert cbloss.count_samples_per_class(loader, 2).tolist() == [1, 2]
    with pytest.raises(TypeError, match=r"^labels: must be an array or an iterable of label batches"):
        cbloss.count_samples_per_class(object(), 3)
