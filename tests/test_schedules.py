"""Re-weighting schedules (cbloss.schedules) against the oracle's class weights at the scheduled beta."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cbloss.schedules import BetaWarmup, DeferredReweighting
from tests import oracle

COUNTS = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


@pytest.mark.parametrize("normalize", ["classes", "samples", None])
@pytest.mark.parametrize("beta", [0.9, 0.999, 0.9999])
def test_deferred_reweighting_switches_at_start(normalize, beta):
    drw = DeferredReweighting(COUNTS, beta, start=160, normalize=normalize)
    for epoch in (0, 1, 159, 159.99):
        np.testing.assert_array_equal(drw(epoch), np.ones(10))
    want = oracle.class_weights(COUNTS, beta, normalize=normalize)
    for epoch in (160, 161, 199):
        np.testing.assert_allclose(drw(epoch), want, rtol=1e-14)


def test_deferred_reweighting_hands_out_copies():
    drw = DeferredReweighting(COUNTS, start=1)
    drw(1)[:] = 0.0
    np.testing.assert_allclose(drw(1), oracle.class_weights(COUNTS, 0.9999), rtol=1e-14)


@pytest.mark.parametrize("normalize", ["classes", "samples", None])
@pytest.mark.parametrize("shape", ["linear", "cosine"])
def test_beta_warmup_follows_its_shape(shape, normalize):
    warm = BetaWarmup(COUNTS, 0.999, start=5, end=15, shape=shape, normalize=normalize)
    for epoch in (0, 5, 7.5, 10, 14, 15, 40):
        fraction = min(max((epoch - 5) / 10, 0.0), 1.0)
        if shape == "cosine":
            fraction = (1 - math.cos(math.pi * fraction)) / 2
        beta = 0.999 * fraction
        assert warm.beta_at(epoch) == pytest.approx(beta, rel=1e-15, abs=0)
        np.testing.assert_allclose(warm(epoch), oracle.class_weights(COUNTS, beta, normalize), rtol=1e-13)
    np.testing.assert_array_equal(warm(0), np.ones(10))


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: DeferredReweighting(COUNTS, 1.5, start=1), "beta"),
        (lambda: DeferredReweighting(COUNTS, start=-1), "start"),
        (lambda: DeferredReweighting(COUNTS, start=1)(-1), "epoch"),
        (lambda: BetaWarmup(COUNTS, 0.9, start=0, end=math.nan), "end"),
        (lambda: BetaWarmup(COUNTS, 0.9, start=0, end=math.inf), "end"),
        (lambda: DeferredReweighting([1, -2], start=1), "samples_per_class"),
        (lambda: BetaWarmup(COUNTS, 0.9, start=3, end=3), "end"),
        (lambda: BetaWarmup(COUNTS, 0.9, start=0, end=3, shape="step"), "shape"),
        (lambda: BetaWarmup(COUNTS, 0.9, start=0, end=3, normalize="rows"), "normalize"),
    ],
)
def test_bad_arguments_are_named(make, name):
    with pytest.raises((ValueError, TypeError), match=rf"^{name}:"):
        make()


def test_schedules_say_what_they_are():
    """A schedule's repr names its class count and every parameter (what a training log prints)."""
    from cbloss.schedules import BetaWarmup, DeferredReweighting

    assert repr(DeferredReweighting([5, 2], beta=0.9999, start=3)) == (
        "DeferredReweighting(num_classes=2, beta=0.9999, start=3.0)"
    )
    assert repr(BetaWarmup([5, 2], 0.999, start=2, end=10, shape="cosine")) == (
        "BetaWarmup(num_classes=2, beta=0.999, start=2.0, end=10.0, shape='cosine')"
    )


@pytest.mark.parametrize(
    "make",
    [lambda: DeferredReweighting(COUNTS, 0.999, start=3), lambda: BetaWarmup(COUNTS, 0.999, start=0, end=10)],
    ids=["deferred", "warmup"],
)
def test_schedules_are_immutable_and_copy_as_they_are(make):
    """A field set after construction would not reach what the schedule hands out (DRW's weights come from its
    beta at construction), or would skip its check: every field, the counts' entries included, is read-only. A
    copy and a pickle hand out the same weights and are read-only too (NumPy's pickles and deep copies of arrays
    are writeable)."""
    import copy
    import pickle

    schedule = make()
    before = schedule(5)
    for name in ("beta", "start", "samples_per_class", "new_field"):
        with pytest.raises(AttributeError, match=rf"is immutable; cannot set '{name}' \(build a new schedule\)"):
            setattr(schedule, name, 0.0)
    with pytest.raises(AttributeError, match="is immutable; cannot delete 'beta'"):
        del schedule.beta
    with pytest.raises(ValueError, match="read-only"):
        schedule.samples_per_class[0] = 1.0
    np.testing.assert_array_equal(schedule(5), before)
    for twin in (copy.copy(schedule), copy.deepcopy(schedule), pickle.loads(pickle.dumps(schedule))):
        np.testing.assert_array_equal(twin(5), before)
        assert repr(twin) == repr(schedule)
        arrays = [value for value in vars(twin).values() if isinstance(value, np.ndarray)]
        assert arrays and not any(array.flags.writeable for array in arrays)
        with pytest.raises(AttributeError, match="is immutable; cannot set 'beta'"):
            twin.beta = 0.5
