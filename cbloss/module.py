"""``ClassBalancedLoss``: the framework-neutral callable that holds the class weights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .functional import evaluate_arrays
from .options import LossOptions, describe, loss_options, split_options, with_options_doc
from .validation import check_axis, check_counts_match, host_class_weights
from .weights import class_balanced_weights

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .options import LossKwargs, ModuleKwargs

__all__ = ["ClassBalancedLoss"]


@with_options_doc
class ClassBalancedLoss:
    """A class-balanced loss bound to its class weights, callable on arrays of any supported namespace.

    ``ClassBalancedLoss(samples_per_class, beta, **options)`` computes
    ``w = class_balanced_weights(samples_per_class, beta, normalize=..., zero_count=...)`` once, in float64 on
    the host; ``ClassBalancedLoss.from_weights(w, **options)`` takes given weights (or None: unweighted).
    Calling it with ``(logits, labels)`` is :func:`cbloss.class_balanced_loss` with those weights, cast to the
    logits' compute dtype on their device; ``loss_and_grad`` also gives the analytic gradient.

    Options:
    {options}
    {weight_options}

    Example:
        >>> import numpy as np, cbloss
        >>> criterion = cbloss.ClassBalancedLoss([100, 10, 1], beta=0.99, loss="focal")
        >>> round(float(criterion(np.array([[2.0, 0.0, -1.0]]), np.array([0]))), 6)
        0.008352
    """

    weights: Any
    options: LossOptions
    axis: int
    beta: float | None
    normalize: str | None

    def __init__(self, samples_per_class: Any, beta: float, *, axis: int = -1, **options: Unpack[ModuleKwargs]):
        weight_opts, self.options = split_options(options)
        self.weights = class_balanced_weights(samples_per_class, beta, **weight_opts)  # float64 NumPy (C,)
        self.axis = check_axis(axis)
        self.beta = float(beta)
        self.normalize = weight_opts["normalize"]

    @classmethod
    def from_weights(cls, weights: Any, *, axis: int = -1, **options: Unpack[LossKwargs]) -> ClassBalancedLoss:
        """A loss with given (C,) class weights (finite, >= 0; any array or sequence), or None: unweighted."""
        self = cls.__new__(cls)
        self.weights = None if weights is None else host_class_weights(weights)
        self.options = loss_options(**options)
        self.axis = check_axis(axis)
        self.beta = None
        self.normalize = None
        return self

    @property
    def num_classes(self) -> int | None:
        return None if self.weights is None else int(self.weights.shape[0])

    def __call__(self, logits: Any, labels: Any, *, sample_weight: Any = None, validate: bool = True) -> Any:
        """The loss, see :func:`cbloss.class_balanced_loss`."""
        return self._evaluate(logits, labels, sample_weight, validate, with_grad=False)[0]

    def loss_and_grad(
        self, logits: Any, labels: Any, *, sample_weight: Any = None, validate: bool = True
    ) -> tuple[Any, Any]:
        """``(loss, d loss / d logits)``, see :func:`cbloss.class_balanced_loss_and_grad`."""
        return self._evaluate(logits, labels, sample_weight, validate, with_grad=True)

    def _evaluate(self, logits: Any, labels: Any, sample_weight: Any, validate: bool, with_grad: bool):
        weights = self.weights
        if self.beta is not None:
            # built from counts: a class-count mismatch is the counts' fault, not the weights'
            check_counts_match(weights, logits, self.axis)
        return evaluate_arrays(logits, labels, weights, self.options, self.axis, validate, with_grad, sample_weight)

    def __repr__(self) -> str:
        return (
            f"ClassBalancedLoss(num_classes={self.num_classes}, beta={self.beta}, normalize={self.normalize!r}, "
            f"{describe(self.options)}, axis={self.axis})"
        )
