r"""Class weights that change during training: each schedule maps an epoch (or a step) to float64 weights.

A schedule is a small immutable object; ``schedule(epoch)`` returns the (C,) weights for that epoch, computed
with :func:`cbloss.class_balanced_weights` (so with the effective number's full float64 accuracy). Hand them to a
loss without rebuilding it: ``criterion.set_weights(w)`` in PyTorch, ``loss.with_weights(w)`` in JAX, and
``ReweightingCallback(schedule)`` in Keras (see each adapter's docs).

References:
    Cao, Wei, Gaidon, Arechiga, Ma. *Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss*,
    NeurIPS 2019: deferred re-weighting (DRW): train unweighted, then switch to class-balanced weights with
    ``beta = 0.9999`` for the last stage.
    Cui, Jia, Lin, Song, Belongie. *Class-Balanced Loss Based on Effective Number of Samples*, CVPR 2019.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ._immutable import Immutable
from .options import weight_options
from .validation import check_beta, check_choice, check_real
from .weights import _counts_as_float64, class_balanced_weights

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .options import WeightKwargs

__all__ = ["BetaWarmup", "DeferredReweighting"]


def _check_epoch(epoch: Any, name: str = "epoch") -> float:
    return check_real(name, epoch, 0.0, math.inf)


class _Schedule(Immutable):
    """A schedule's fields are checked once, in ``__init__`` (a schedule with another beta or start is a new
    schedule); its arrays are read-only."""

    _instead = " (build a new schedule)"

    def _set(self, **fields: Any) -> None:
        for value in fields.values():
            if isinstance(value, np.ndarray):  # our own copies
                value.setflags(write=False)
        super()._set(**fields)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # pickle and deepcopy set the fields of the new schedule: through _set, as NumPy's pickles and deep copies
        # of arrays are writeable
        self._set(**state)


class DeferredReweighting(_Schedule):
    """Deferred re-weighting (DRW): all-ones weights before epoch ``start``, class-balanced weights from it on.

    ``weights(e) = 1`` for ``e < start``, ``class_balanced_weights(samples_per_class, beta, **options)`` for
    ``e >= start``.

    Example:
        >>> from cbloss.schedules import DeferredReweighting
        >>> drw = DeferredReweighting([100, 10, 1], beta=0.9999, start=160)
        >>> drw(0).tolist(), drw(160).round(3).tolist()
        ([1.0, 1.0, 1.0], [0.027, 0.27, 2.702])
    """

    samples_per_class: np.ndarray
    beta: float
    start: float
    _balanced: np.ndarray

    def __init__(self, samples_per_class: Any, beta: float = 0.9999, *, start: float, **options: Unpack[WeightKwargs]):
        counts, checked = _counts_as_float64(samples_per_class), check_beta(beta)
        balanced = class_balanced_weights(counts, checked, **weight_options(**options))
        self._set(samples_per_class=counts, beta=checked, start=_check_epoch(start, "start"), _balanced=balanced)

    def __call__(self, epoch: float) -> np.ndarray:
        if _check_epoch(epoch) < self.start:
            return np.ones_like(self._balanced)
        return self._balanced.copy()

    def __repr__(self) -> str:
        return f"DeferredReweighting(num_classes={len(self.samples_per_class)}, beta={self.beta}, start={self.start})"


class BetaWarmup(_Schedule):
    """A beta that moves from 0 at epoch ``start`` to ``beta`` at epoch ``end``, constant after; the weights are
    :func:`cbloss.class_balanced_weights` at that beta (beta = 0: all ones, an empty class's 0 with
    ``zero_count="zero"``).

    ``shape="linear"``: ``beta(e) = beta * f``; ``"cosine"``: ``beta * (1 - cos(pi * f)) / 2``, with
    ``f = clip((e - start) / (end - start), 0, 1)``.

    Example:
        >>> from cbloss.schedules import BetaWarmup
        >>> warm = BetaWarmup([100, 10, 1], beta=0.999, start=0, end=10)
        >>> warm.beta_at(5), warm(0).tolist()
        (0.4995, [1.0, 1.0, 1.0])
    """

    samples_per_class: np.ndarray
    beta: float
    start: float
    end: float
    shape: str
    _options: tuple[tuple[str, Any], ...]  # the weight options as (name, value) pairs, which nothing can change

    def __init__(
        self,
        samples_per_class: Any,
        beta: float,
        *,
        start: float,
        end: float,
        shape: str = "linear",
        **options: Unpack[WeightKwargs],
    ):
        start, end = _check_epoch(start, "start"), _check_epoch(end, "end")
        if not end > start:
            raise ValueError(f"end: must be after start={start}, got {end}")
        if end == math.inf:  # the warm-up would never move: beta(e) = 0 * inf / inf
            raise ValueError(f"end: must be finite, got {end}")
        self._set(samples_per_class=_counts_as_float64(samples_per_class), beta=check_beta(beta), start=start, end=end)
        self._set(
            shape=check_choice("shape", shape, ("linear", "cosine")), _options=tuple(weight_options(**options).items())
        )

    def beta_at(self, epoch: float) -> float:
        """The beta of ``epoch``."""
        fraction = min(max((_check_epoch(epoch) - self.start) / (self.end - self.start), 0.0), 1.0)
        if self.shape == "cosine":
            fraction = (1.0 - math.cos(math.pi * fraction)) / 2.0
        return self.beta * fraction

    def __call__(self, epoch: float) -> np.ndarray:
        return class_balanced_weights(self.samples_per_class, self.beta_at(epoch), **dict(self._options))

    def __repr__(self) -> str:
        return (
            f"BetaWarmup(num_classes={len(self.samples_per_class)}, beta={self.beta}, start={self.start}, "
            f"end={self.end}, shape={self.shape!r})"
        )
