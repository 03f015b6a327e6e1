"""docs/migration.md, framework-free: the other projects' class weights and the official TensorFlow code's
losses, re-implemented here in NumPy from their published formulas, against cbloss; the import-name clash with
PyPI's ``cbloss``; and the options the migration guide names. The PyTorch peers are in
tests/torch/test_migration_torch.py."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import numpy as np
import pytest

import cbloss
from cbloss.options import LOSS_OPTIONS, WEIGHT_OPTIONS, loss_options

ROOT = Path(__file__).resolve().parent.parent
GUIDE = (ROOT / "docs" / "migration.md").read_text()

COUNT_SETS = {
    "cifar10_lt_100": np.floor(5000 * 0.01 ** (np.arange(10) / 9)),
    "port_example": np.array([2, 3, 1, 2, 2]),
    "long_tail_100": np.maximum(1, np.floor(1000 * 0.001 ** (np.arange(100) / 99))),
}


def peer_weights(samples_per_class, beta, safe=False):
    """The weights every peer computes (the official code, the port, balanced-loss, PyPI's cbloss): the naive
    float64 formula scaled to sum to the number of classes; ``safe`` is balanced-loss's handling of empty
    classes (their effective number is set to infinity and they are left out of the class count)."""
    counts = np.asarray(samples_per_class, dtype=np.float64)
    one_minus_power = 1.0 - np.power(beta, counts)
    num_classes = counts.size
    if safe:
        num_classes = np.count_nonzero(one_minus_power)
        one_minus_power = np.where(one_minus_power == 0, np.inf, one_minus_power)
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = (1.0 - beta) / one_minus_power
        return raw / raw.sum() * num_classes


@pytest.mark.parametrize("counts", list(COUNT_SETS.values()), ids=list(COUNT_SETS))
@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9, 0.99, 0.999, 0.9999])
def test_peer_weights_are_normalize_classes(counts, beta):
    ours = cbloss.class_balanced_weights(counts, beta)
    np.testing.assert_allclose(ours, peer_weights(counts, beta), rtol=1e-12)
    np.testing.assert_allclose(ours.sum(), counts.size, rtol=1e-14)


def test_where_peer_weights_are_nan_ours_are_defined_or_an_error():
    counts = COUNT_SETS["cifar10_lt_100"]
    assert np.isnan(peer_weights(counts, 1.0)).all()  # 0 / 0
    inverse_frequency = (1.0 / counts) / (1.0 / counts).sum() * counts.size
    np.testing.assert_allclose(cbloss.class_balanced_weights(counts, 1.0), inverse_frequency, rtol=1e-14)

    with_empty = np.array([50.0, 0.0, 7.0])
    # the empty class's raw weight is inf: after the normalisation it is NaN (inf / inf) and every other one 0
    peer = peer_weights(with_empty, 0.99)
    assert np.isnan(peer[1]) and peer[[0, 2]].tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match=r"samples_per_class: classes \[1\] have 0 samples"):
        cbloss.class_balanced_weights(with_empty, 0.99)


@pytest.mark.parametrize("beta", [0.5, 0.9, 0.999, 0.9999])
@pytest.mark.parametrize("counts", [[50, 0, 7], [0, 3, 0, 1000, 12], [0, 0, 1]], ids=str)
def test_balanced_loss_safe_is_zero_count_zero(counts, beta):
    ours = cbloss.class_balanced_weights(counts, beta, zero_count="zero")
    theirs = peer_weights(counts, beta, safe=True)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    assert ours[np.asarray(counts) == 0].tolist() == [0.0] * counts.count(0)
    np.testing.assert_allclose(ours.sum(), np.count_nonzero(counts), rtol=1e-14)


# --------------------------------------------------------------------------------------------------------------
# The official TensorFlow code (src/cifar_main.py), in float64 NumPy


def _sigmoid_cross_entropy(logits, targets):
    """tf.nn.sigmoid_cross_entropy_with_logits's documented formula."""
    return np.maximum(logits, 0) - logits * targets + np.log1p(np.exp(-np.abs(logits)))


def official_loss(logits, labels, weights, loss_type, gamma):
    """The official code's three losses: each sample's weight w_y tiled over the classes; softmax through
    tf.losses.softmax_cross_entropy's default reduction (weighted sum / number of non-zero weights), sigmoid and
    focal summed and divided by the number of positive labels; its focal factor as it writes it."""
    one_hot = np.eye(logits.shape[1])[labels]
    sample_weight = weights[labels]
    if loss_type == "softmax":
        shifted = logits - logits.max(axis=1, keepdims=True)
        cross_entropy = np.log(np.exp(shifted).sum(axis=1)) - (shifted * one_hot).sum(axis=1)
        return (sample_weight * cross_entropy).sum() / np.count_nonzero(sample_weight)
    elements = _sigmoid_cross_entropy(logits, one_hot)
    if loss_type == "focal" and gamma != 0.0:
        elements = elements * np.exp(-gamma * one_hot * logits - gamma * np.log1p(np.exp(-logits)))
    return (sample_weight[:, None] * elements).sum() / one_hot.sum()


def _case(num_samples, num_classes, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(num_samples, num_classes)) * 3).astype(dtype)
    labels = rng.integers(0, num_classes, size=num_samples)
    counts = np.floor(1000 * 0.02 ** (np.arange(num_classes) / max(num_classes - 1, 1)))
    return logits, labels, counts


@pytest.mark.parametrize("shape", [(1, 2), (8, 10), (33, 5)], ids=str)
@pytest.mark.parametrize(
    ("loss_type", "gamma"), [("softmax", 0.0), ("sigmoid", 0.0), ("focal", 1.0), ("focal", 0.5), ("focal", 2.0)]
)
@pytest.mark.parametrize("beta", [0.999, 0.9999])
def test_official_losses_are_reduction_mean(shape, loss_type, gamma, beta):
    logits, labels, counts = _case(*shape, seed=shape[0])
    weights = peer_weights(counts, beta)
    want = official_loss(logits, labels, weights, loss_type, gamma)
    got = cbloss.class_balanced_loss(
        logits, labels, cbloss.class_balanced_weights(counts, beta), loss=loss_type, gamma=gamma, reduction="mean"
    )
    np.testing.assert_allclose(got, want, rtol=1e-11)


def test_official_default_gamma_is_one_and_ours_two():
    assert loss_options(loss="focal").gamma == 2.0
    logits, labels, counts = _case(16, 10, seed=3)
    weights = cbloss.class_balanced_weights(counts, 0.999)
    official_default = official_loss(logits, labels, weights, "focal", gamma=1.0)
    with_our_default = cbloss.class_balanced_loss(logits, labels, weights, loss="focal")
    assert abs(with_our_default - official_default) > 0.05 * official_default
    np.testing.assert_allclose(
        cbloss.class_balanced_loss(logits, labels, weights, loss="focal", gamma=1.0), official_default, rtol=1e-12
    )


# The largest float32 logit whose exp(-x) overflows, and the next one up.
FLOAT32_OVERFLOWS = np.float32(-88.72284)
FLOAT32_LAST_FINITE = np.float32(-88.72283)


@pytest.mark.parametrize("label_logit", [True, False], ids=["label logit", "other logit"])
def test_official_focal_factor_overflows_in_float32_and_ours_does_not(label_logit):
    gamma = np.float32(1.0)
    target = np.float32(1.0 if label_logit else 0.0)

    def official_factor(x):
        with np.errstate(over="ignore"):
            return np.exp(-gamma * target * x - gamma * np.log1p(np.exp(-x)))

    exact = 1.0 / (1.0 + np.exp(np.float64(FLOAT32_LAST_FINITE))) if label_logit else 0.0  # 1 - p_t
    with np.errstate(over="ignore"):
        assert np.isfinite(np.exp(-FLOAT32_LAST_FINITE)) and np.isinf(np.exp(-FLOAT32_OVERFLOWS))
    np.testing.assert_allclose(official_factor(FLOAT32_LAST_FINITE), exact, atol=1e-6)
    # beyond the limit the label's factor is 0 instead of 1: its loss term disappears
    assert official_factor(FLOAT32_OVERFLOWS) == 0.0
    for x in (FLOAT32_OVERFLOWS, np.float32(-1e4)):
        logits = np.array([[x, 0.5, -1.0]], dtype=np.float32)
        label = np.array([0 if label_logit else 1])
        ours = cbloss.class_balanced_loss(logits, label, None, loss="focal", gamma=1.0)
        want = cbloss.class_balanced_loss(logits.astype(np.float64), label, None, loss="focal", gamma=1.0)
        assert ours.dtype == np.float32
        np.testing.assert_allclose(ours, want, rtol=1e-6)
        if label_logit:
            assert ours > -x  # the label's term, about |x|, is there


# --------------------------------------------------------------------------------------------------------------
# PyPI's cbloss and this project share the import name


def test_distribution_is_class_balanced_loss_and_import_name_cbloss():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^name = "class-balanced-loss"$', pyproject, re.M)
    assert re.search(r'^include = \["cbloss\*"\]$', pyproject, re.M)
    # the check docs/migration.md gives: no other distribution provides the import name here
    assert set(importlib.metadata.packages_distributions().get("cbloss", ())) == {"class-balanced-loss"}, (
        "another distribution installs files into cbloss/: see docs/migration.md (PyPI's cbloss)"
    )
    assert hasattr(cbloss, "class_balanced_loss")


# --------------------------------------------------------------------------------------------------------------
# The guide itself


def test_guide_options_are_valid_and_conventions_sections_exist():
    named = re.findall(r"\b(\w+)=(\"[\w.]*\"|None|\d[\d.]*)", GUIDE)
    checked = 0
    for name, value in named:
        option = LOSS_OPTIONS.get(name) or WEIGHT_OPTIONS.get(name)
        if option is not None:
            option.check(None if value == "None" else value.strip('"') if value.startswith('"') else float(value))
            checked += 1
    assert checked >= 20
    headings = set(re.findall(r"^#+ (\d+(?:\.\d+)?)\.? ", (ROOT / "docs" / "conventions.md").read_text(), re.M))
    cited = set(re.findall(r"§(\d+(?:\.\d+)?)", GUIDE))
    assert cited and cited <= headings, f"sections cited but missing from docs/conventions.md: {cited - headings}"


def test_readme_and_torch_docs_link_the_guide():
    assert "(docs/migration.md)" in (ROOT / "README.md").read_text()
    assert "(migration.md)" in (ROOT / "docs" / "torch.md").read_text()
