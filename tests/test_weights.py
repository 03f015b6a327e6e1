"""Class-balanced weights (docs/conventions.md §3): the three normalisations against the exact values
(tests/oracle.py), the beta = 0 and beta = 1 limits, zero_count="zero", and count_samples_per_class from every
kind of input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import cbloss
from tests import oracle

NORMALIZE = ["classes", "samples", None]
BETAS = [0.0, 0.3, 0.9, 0.99, 0.9999, 0.999999, 1 - 1e-12, 1.0]


def _counts(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    C = int(rng.integers(2, 12))
    return np.floor(10 ** rng.uniform(0, 7, C))  # long-tailed: 1 to 10^7 samples a class


def assert_ulps(got, want, max_ulps):
    got = np.asarray(got)
    assert got.dtype == np.float64 and got.shape == want.shape
    err = np.abs(got - want) / np.spacing(np.abs(want))
    assert np.all(err <= max_ulps), f"{err.max():.2f} ulps > {max_ulps}: got {got.tolist()}, exact {want.tolist()}"


@pytest.mark.parametrize("normalize", NORMALIZE, ids=str)
@pytest.mark.parametrize("beta", BETAS, ids=repr)
@pytest.mark.parametrize("seed", range(4))
def test_weights_match_exact(seed, beta, normalize):
    counts = _counts(seed)
    got = cbloss.class_balanced_weights(counts, beta, normalize=normalize)
    # 2 ulps for E, one for the inverse, the normalising sum over C classes and the scaling
    assert_ulps(got, oracle.class_weights(counts, beta, normalize), 4 + len(counts))


@pytest.mark.parametrize("beta", BETAS, ids=repr)
def test_normalisations(beta):
    n = np.array([5000.0, 2000.0, 500.0, 100.0, 50.0, 10.0, 1.0])
    raw = cbloss.class_balanced_weights(n, beta, normalize=None)
    by_classes = cbloss.class_balanced_weights(n, beta)  # the default
    by_samples = cbloss.class_balanced_weights(n, beta, normalize="samples")
    for w in (raw, by_classes, by_samples):
        assert isinstance(w, np.ndarray) and w.dtype == np.float64 and w.shape == n.shape
    effective = np.asarray(cbloss.effective_number(n, beta))
    np.testing.assert_allclose(raw, 1.0 / effective, rtol=4e-16)
    np.testing.assert_allclose(by_classes.sum(), len(n), rtol=1e-15)
    np.testing.assert_allclose((n * by_samples).sum(), n.sum(), rtol=1e-15)
    # all three are the same weights up to a constant factor
    np.testing.assert_allclose(by_classes / raw, np.full(len(n), by_classes[0] / raw[0]), rtol=1e-15)
    np.testing.assert_allclose(by_samples / raw, np.full(len(n), by_samples[0] / raw[0]), rtol=1e-15)


def test_beta_zero_gives_equal_weights():
    n = np.array([1000.0, 10.0, 1.0, 3.5])
    np.testing.assert_array_equal(cbloss.class_balanced_weights(n, 0.0), np.ones(4))
    np.testing.assert_array_equal(cbloss.class_balanced_weights(n, 0.0, normalize=None), np.ones(4))
    np.testing.assert_allclose(cbloss.class_balanced_weights(n, 0.0, normalize="samples"), np.ones(4), rtol=1e-15)


def test_beta_one_gives_inverse_frequency():
    n = np.array([1000.0, 10.0, 1.0, 3.0])
    np.testing.assert_array_equal(cbloss.class_balanced_weights(n, 1.0, normalize=None), 1.0 / n)
    inverse = (1.0 / n) / (1.0 / n).sum() * len(n)
    np.testing.assert_allclose(cbloss.class_balanced_weights(n, 1.0), inverse, rtol=2e-16 * 8)
    # "samples": every class carries the same total weight n_i w_i = sum(n) / C
    by_samples = cbloss.class_balanced_weights(n, 1.0, normalize="samples")
    np.testing.assert_allclose(n * by_samples, np.full(4, n.sum() / 4), rtol=1e-15)


@pytest.mark.parametrize("normalize", NORMALIZE, ids=str)
@pytest.mark.parametrize("beta", [0.0, 0.9, 0.9999, 1.0], ids=repr)
def test_zero_count_zero(beta, normalize):
    n = np.array([100.0, 0.0, 10.0, 0.0, 1.0])
    got = cbloss.class_balanced_weights(n, beta, normalize=normalize, zero_count="zero")
    assert got[1] == 0.0 and got[3] == 0.0
    want = oracle.class_weights(n, beta, normalize)
    np.testing.assert_allclose(got, want, rtol=1e-15)
    # the present classes get exactly what they would get on their own
    alone = cbloss.class_balanced_weights(n[[0, 2, 4]], beta, normalize=normalize)
    np.testing.assert_allclose(got[[0, 2, 4]], alone, rtol=1e-15)
    if normalize == "classes":
        np.testing.assert_allclose(got.sum(), 3.0, rtol=1e-15)  # the number of classes that have samples


def test_weights_decrease_as_counts_grow():
    n = np.array([1.0, 2.0, 3.0, 10.0, 100.0, 1e4, 1e6])
    for beta in (0.5, 0.9, 0.9999, 1 - 1e-12, 1.0):
        w = cbloss.class_balanced_weights(n, beta, normalize=None)
        # never increasing; strictly decreasing wherever the exact weights differ in float64 (they saturate at
        # 1 - beta once beta^n underflows below an ulp)
        exact = oracle.class_weights(n, beta, None)
        assert np.all(np.diff(w) <= 0), (beta, w)
        assert np.all(np.diff(w)[np.diff(exact) < 0] < 0), (beta, w)


def test_inputs_list_and_int_array():
    want = cbloss.class_balanced_weights(np.array([10.0, 20.0, 70.0]), 0.99)
    np.testing.assert_array_equal(cbloss.class_balanced_weights([10, 20, 70], 0.99), want)
    np.testing.assert_array_equal(cbloss.class_balanced_weights(np.array([10, 20, 70]), 0.99), want)


# count_samples_per_class

LABELS = np.array([[0, 2, 2], [4, 2, 0]])
COUNTS = np.array([2, 0, 3, 0, 1])


def _check_counts(got, want=COUNTS):
    assert isinstance(got, np.ndarray) and got.dtype == np.int64
    np.testing.assert_array_equal(got, want)


def test_count_from_numpy_arrays_of_any_shape():
    _check_counts(cbloss.count_samples_per_class(LABELS, 5))
    _check_counts(cbloss.count_samples_per_class(LABELS.reshape(-1), 5))
    _check_counts(cbloss.count_samples_per_class(LABELS.astype(np.int32), 5))
    _check_counts(cbloss.count_samples_per_class(np.array(3), 5), [0, 0, 0, 1, 0])
    _check_counts(cbloss.count_samples_per_class(np.array([], dtype=np.int64), 3), [0, 0, 0])


def test_count_from_a_list():
    _check_counts(cbloss.count_samples_per_class(LABELS.reshape(-1).tolist(), 5))


@pytest.mark.parametrize("label", [3, np.int64(3), np.uint8(3)], ids=["python", "int64", "uint8"])
def test_count_one_label_given_as_a_number(label):
    """A Python number is accepted where an array is (docs/conventions.md §6.1), as NumPy's scalars are."""
    _check_counts(cbloss.count_samples_per_class(label, 5), [0, 0, 0, 1, 0])


def test_count_from_a_generator_of_batches():
    batches = (LABELS[i] for i in range(2))
    _check_counts(cbloss.count_samples_per_class(batches, 5))
    _check_counts(cbloss.count_samples_per_class(iter([LABELS[0].tolist(), LABELS[1]]), 5))


@pytest.mark.parametrize("inputs_dtype", [np.int64, np.float32], ids=["token ids", "images"])
@pytest.mark.parametrize("container", [list, tuple])
def test_count_from_a_list_of_input_label_pairs_shaped_alike(inputs_dtype, container):
    """A list of (inputs, labels) batches is a pipeline even when the inputs have the labels' shape (token ids and
    their tags, images and their masks): stacked into one array, the inputs would be counted as labels."""
    rng = np.random.default_rng(0)
    pairs = container((rng.integers(0, 5, LABELS[i].shape).astype(inputs_dtype), LABELS[i]) for i in range(2))
    _check_counts(cbloss.count_samples_per_class(pairs, 5))
    _check_counts(cbloss.count_samples_per_class(container(LABELS[i] for i in range(2)), 5))  # a list of batches


@pytest.mark.parametrize(
    ("counts", "beta", "normalize"),
    [([1e308, 1e308], 0.0, "samples"), ([1e308, 1e308], 0.5, "samples"), ([1e-310, 1.0], 1.0, "classes")],
)
def test_weights_that_overflow_are_an_error(counts, beta, normalize):
    """Counts near float64's limits make the sums or 1 / E overflow: a ValueError naming them, not NaN or inf
    weights (nor a RuntimeWarning on the way)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"^samples_per_class: the weights overflow float64"):
            cbloss.class_balanced_weights(counts, beta, normalize=normalize)


def test_count_feeds_the_weights():
    counts = cbloss.count_samples_per_class(np.repeat(np.arange(3), [50, 5, 1]), 3)
    np.testing.assert_array_equal(
        cbloss.class_balanced_weights(counts, 0.99), cbloss.class_balanced_weights([50, 5, 1], 0.99)
    )


def test_count_pipeline_items_of_inputs_and_labels():
    """Items of a pipeline may be (inputs, labels) pairs or dicts: the labels are counted, the inputs skipped."""
    inputs = np.zeros((3, 2))
    pairs = [(inputs, LABELS[0]), (inputs, LABELS[1])]
    _check_counts(cbloss.count_samples_per_class(iter(pairs), 5))
    for key in ("labels", "label", "targets", "target", "y"):
        dicts = [{"image": inputs, key: LABELS[0]}, {"image": inputs, key: LABELS[1]}]
        _check_counts(cbloss.count_samples_per_class(iter(dicts), 5))
    keys = "'labels', 'label', 'targets', 'target' or 'y'"
    with pytest.raises(TypeError, match=rf"^labels: a dict batch needs a {keys} entry, got keys \['image'\]$"):
        cbloss.count_samples_per_class(iter([{"image": inputs}]), 5)


@pytest.mark.parametrize("container", [list, tuple])
@pytest.mark.parametrize("weight_dtype", [np.int64, np.float32])
def test_count_pipeline_items_with_sample_weights(container, weight_dtype):
    """Keras's (x, y, sample_weight) batches: the labels are the second entry, not the sample weights, whatever
    their dtype (integer sample weights in [0, C) would count as labels without an error)."""
    inputs = np.zeros((3, 2))
    items = [container((inputs, labels, np.ones(3, weight_dtype))) for labels in LABELS]
    _check_counts(cbloss.count_samples_per_class(iter(items), 5))
    samples = [container((np.zeros(2), int(label), 1)) for label in LABELS.reshape(-1)]  # one sample per item
    _check_counts(cbloss.count_samples_per_class(samples, 5))


def test_count_samples_whose_labels_are_numbers_and_inputs_dicts():
    """Items whose labels are Python numbers (a list of samples) or whose inputs are dicts: the labels are counted."""
    samples = [(np.zeros(2), int(label)) for label in LABELS.reshape(-1)]
    _check_counts(cbloss.count_samples_per_class(samples, 5))
    _check_counts(cbloss.count_samples_per_class([({"image": np.zeros((3, 2))}, labels) for labels in LABELS], 5))
    _check_counts(cbloss.count_samples_per_class([[np.zeros(2), int(label)] for label in LABELS.reshape(-1)], 5))
    _check_counts(cbloss.count_samples_per_class([labels.tolist() for labels in LABELS], 5))  # lists of labels


def test_count_progress_on_request(capsys):
    cbloss.count_samples_per_class(iter(list(LABELS)), 5, progress=True)
    assert "counting labels: 2 batches, done" in capsys.readouterr().err
    cbloss.count_samples_per_class(iter(list(LABELS)), 5, progress=False)
    assert capsys.readouterr().err == ""


class _TargetsOnly:
    """A dataset whose inputs cannot be loaded: counting must read ``targets`` alone."""

    def __init__(self, targets):
        self.targets = targets

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        raise AssertionError("an input was loaded")


def test_count_reads_a_datasets_targets_without_loading_inputs():
    _check_counts(cbloss.count_samples_per_class(_TargetsOnly(list(LABELS.reshape(-1))), 5))


@pytest.mark.parametrize("dtype", [bool, np.int64, np.float32])
def test_count_multi_hot_positives(dtype):
    rng = np.random.default_rng(5)
    targets = rng.uniform(size=(4, 7, 6)) < 0.3
    want = targets.reshape(-1, 6).sum(axis=0)
    got = cbloss.count_samples_per_class(targets.astype(dtype), 6, multi_label=True)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.int64
    batches = iter([targets[0].astype(dtype), targets[1:].astype(dtype)])
    np.testing.assert_array_equal(cbloss.count_samples_per_class(batches, 6, multi_label=True), want)


def test_count_multi_hot_positives_along_a_class_axis():
    """PyTorch's dense targets carry the classes in dim 1: counted with axis=1. Left at the last axis, a trailing
    dim of C entries would be counted as classes (no error can tell them apart), so the axis is named."""
    rng = np.random.default_rng(6)
    class_last = rng.uniform(size=(2, 4, 3, 3)) < 0.3  # (N, H, W, C) with W == C
    want = class_last.reshape(-1, 3).sum(axis=0)
    channels_first = np.moveaxis(class_last, -1, 1)  # (N, C, H, W)
    np.testing.assert_array_equal(cbloss.count_samples_per_class(channels_first, 3, multi_label=True, axis=1), want)
    batches = iter([channels_first[:1], channels_first[1:]])
    np.testing.assert_array_equal(cbloss.count_samples_per_class(batches, 3, multi_label=True, axis=1), want)
    with pytest.raises(ValueError, match=r"^labels: multi-hot targets must have 3 classes along axis 2"):
        cbloss.count_samples_per_class(channels_first, 3, multi_label=True, axis=2)
    with pytest.raises(ValueError, match=r"^axis: applies to multi-hot targets"):
        cbloss.count_samples_per_class([0, 2, 1], 3, axis=1)
    with pytest.raises(TypeError, match=r"^axis: must be an integer"):
        cbloss.count_samples_per_class(channels_first, 3, multi_label=True, axis=1.0)


@pytest.mark.parametrize("bad", [np.full((2, 3), 0.5), np.full((2, 4), 1.0), np.full((2, 3), 2)])
def test_count_multi_hot_rejects_non_binary_or_wrong_classes(bad):
    with pytest.raises(ValueError, match=r"^labels: multi-hot"):
        cbloss.count_samples_per_class(bad, 3, multi_label=True)


class _Loader:
    """A loader-like pipeline (``dataset``, ``batch_size`` and an index sampler, as a PyTorch ``DataLoader`` has)
    whose iteration yields the labels at the sampled indices."""

    def __init__(self, dataset, labels, **samplers):
        self.dataset, self.labels, self.batch_size = dataset, np.asarray(labels), 2
        for name, sampler in samplers.items():
            setattr(self, name, sampler)

    def __iter__(self):
        batches = getattr(self, "batch_sampler", None) or [[i] for i in getattr(self, "sampler", [])]
        return iter(self.labels[np.asarray(batch, dtype=np.int64)] for batch in batches)


def test_count_reads_a_loaders_targets_at_its_sampled_indices():
    """The dataset's targets are read at the indices the loader's (batch) sampler yields, repeats included, and
    without loading inputs; without an index sampler the loader is iterated."""
    labels = LABELS.reshape(-1)  # [0, 2, 2, 4, 2, 0]
    dataset = _TargetsOnly(list(labels))
    batches = [[5, 1], [1, 3, 3], [0]]
    want = np.bincount(labels[[5, 1, 1, 3, 3, 0]], minlength=5)
    _check_counts(cbloss.count_samples_per_class(_Loader(dataset, labels, batch_sampler=batches), 5), want)
    _check_counts(cbloss.count_samples_per_class(_Loader(dataset, labels, sampler=[4, 4, 3]), 5), [0, 0, 2, 0, 1])
    _check_counts(cbloss.count_samples_per_class(_Loader(dataset, labels, sampler=[]), 5), [0, 0, 0, 0, 0])
    # the sampled counts differ from the dataset's: a count of the whole dataset fails the checks above
    assert want.tolist() != COUNTS.tolist()
    # no sampler: iterated (it yields nothing), not read from the dataset's targets
    _check_counts(cbloss.count_samples_per_class(_Loader(dataset, labels), 5), [0, 0, 0, 0, 0])


@pytest.mark.parametrize("normalize", NORMALIZE, ids=str)
def test_zero_count_zero_needs_one_class_with_samples(normalize):
    """All classes empty: no weights can be made with zero_count="zero" (all zeros would silence the loss)."""
    with pytest.raises(ValueError, match=r"^samples_per_class: every class has 0 samples"):
        cbloss.class_balanced_weights([0, 0], 0.9, zero_count="zero", normalize=normalize)


class _StaleTargets:
    """A dataset whose stored ``targets`` do not match what it yields (one entry too many): it is iterated."""

    def __init__(self):
        self.targets = [0, 1, 2]

    def __len__(self):
        return 2

    def __getitem__(self, index):
        if index >= 2:
            raise IndexError(index)
        return np.zeros(1), 1


def test_count_iterates_a_dataset_whose_stored_targets_do_not_match_its_length():
    np.testing.assert_array_equal(cbloss.count_samples_per_class(_StaleTargets(), 3), [0, 2, 0])


class _TransformedTargets(_StaleTargets):
    """A dataset whose items pass their stored label through ``target_transform`` (torchvision's): it is iterated,
    since the stored ``targets`` are not what it yields."""

    def __init__(self):
        self.targets = [0, 1]
        self.target_transform = lambda label: 2

    def __getitem__(self, index):
        if index >= 2:
            raise IndexError(index)
        return np.zeros(1), self.target_transform(self.targets[index])


def test_count_iterates_a_dataset_with_a_target_transform():
    np.testing.assert_array_equal(cbloss.count_samples_per_class(_TransformedTargets(), 3), [0, 0, 2])
