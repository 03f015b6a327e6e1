"""``ClassBalancedLoss``: the framework-neutral callable that holds the class weights."""

from __future__ import annotations

from typing import Any

from .losses import LossName, LossOptions, Reduction, _evaluate
from .weights import Normalize, class_balanced_weights, host_class_weights

__all__ = ["ClassBalancedLoss"]


class ClassBalancedLoss:
    """A class-balanced loss bound to its class weights, callable on arrays of any supported namespace.

    ``ClassBalancedLoss(samples_per_class, beta)`` computes ``w = class_balanced_weights(samples_per_class,
    beta, normalize=normalize, zero_count=zero_count)`` once in float64 on the host;
    ``ClassBalancedLoss.from_weights(w)`` takes precomputed weights. Calling it with ``(logits, labels)``
    evaluates :func:`cbloss.class_balanced_loss` with those weights, cast to the logits' compute dtype on the
    logits' device (float16/bfloat16 logits compute in float32). ``loss_and_grad`` gives the analytic gradient.
    """

    def __init__(
        self,
        samples_per_class: Any,
        beta: float,
        *,
        loss: LossName = "softmax",
        gamma: float | None = None,
        normalize: Normalize = "classes",
        reduction: Reduction = "mean",
        label_smoothing: float = 0.0,
        ignore_index: int | None = None,
        zero_count: str = "error",
        axis: int = -1,
    ):
        weights = class_balanced_weights(samples_per_class, beta, normalize=normalize, zero_count=zero_count)
        self._init(weights, loss, gamma, reduction, label_smoothing, ignore_index, axis)
        self.beta = float(beta)
        self.normalize = normalize

    @classmethod
    def from_weights(
        cls,
        weights: Any,
        *,
        loss: LossName = "softmax",
        gamma: float | None = None,
        reduction: Reduction = "mean",
        label_smoothing: float = 0.0,
        ignore_index: int | None = None,
        axis: int = -1,
    ) -> ClassBalancedLoss:
        """A loss with given (C,) class weights (finite, >= 0), or ``None`` for an unweighted loss."""
        self = cls.__new__(cls)
        if weights is not None:
            weights = host_class_weights(weights)
        self._init(weights, loss, gamma, reduction, label_smoothing, ignore_index, axis)
        self.beta = None
        self.normalize = None
        return self

    def _init(self, weights, loss, gamma, reduction, label_smoothing, ignore_index, axis) -> None:
        self.weights = weights  # float64 NumPy (C,), or None
        self.options = LossOptions.make(loss, gamma, reduction, label_smoothing, ignore_index)
        self.axis = int(axis)

    @property
    def num_classes(self) -> int | None:
        return None if self.weights is None else int(self.weights.shape[0])

    def __call__(self, logits: Any, labels: Any, *, validate: bool = True) -> Any:
        return _evaluate(logits, labels, self.weights, self.options, self.axis, validate, with_grad=False)[0]

    def loss_and_grad(self, logits: Any, labels: Any, *, validate: bool = True) -> tuple[Any, Any]:
        """``(loss, d loss / d logits)``, see :func:`cbloss.class_balanced_loss_and_grad`."""
        return _evaluate(logits, labels, self.weights, self.options, self.axis, validate, with_grad=True)

    def __repr__(self) -> str:
        o = self.options
        return (
            f"ClassBalancedLoss(num_classes={self.num_classes}, beta={self.beta}, loss={o.loss!r}, "
            f"gamma={o.gamma}, normalize={self.normalize!r}, reduction={o.reduction!r})"
        )
