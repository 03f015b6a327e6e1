"""Keras 3: the class-balanced loss on every Keras backend, and the callback that re-weights it during ``fit``.

:class:`ClassBalancedLoss` hands each call to the adapter of the running backend (tensorflow, jax or torch), so
the core's definitions and analytic gradient are the same everywhere (docs/conventions.md §1, §13). Its class
weights live in a non-trainable variable, which :class:`ReweightingCallback` updates at each epoch's start."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import keras
import numpy as np
from keras.src.backend import set_keras_mask as _set_keras_mask  # private (keras>=3.15); Loss.__call__ reads it

from .. import validation
from ..losses import LOSSES
from ..options import split_options, with_options_doc
from ..weights import class_balanced_weights

if TYPE_CHECKING:
    from collections.abc import Callable

    from typing_extensions import Unpack

    from ..options import UnreducedLossKwargs, WeightKwargs

    class KerasLossKwargs(UnreducedLossKwargs, WeightKwargs, total=False): ...  # reduction is Keras' own


__all__ = ["ClassBalancedLoss", "ReweightingCallback"]


def _weights_variable(weights: np.ndarray) -> keras.Variable:
    """The (C,) class weights as a non-trainable Keras variable, never autocast to a mixed-precision dtype."""
    # float64 keeps the effective number's accuracy where the backend stores it (JAX without x64 cannot).
    dtype = "float64" if _x64() else "float32"
    return keras.Variable(weights, dtype=dtype, trainable=False, autocast=False, name="cbloss_class_weights")


def _x64() -> bool:
    """Whether the backend has 64-bit dtypes (JAX only with jax_enable_x64)."""
    if keras.backend.backend() != "jax":
        return True
    import jax

    return bool(jax.config.read("jax_enable_x64"))


def _class_indices(labels: Any, num_classes: int, ignore_index: int | None, validate: bool | None) -> Any:
    """Class indices that Keras cast to floats, as integers again and never truncated: a non-integral one is an
    error where values are concrete (unless ``validate`` is False), a graph assertion in TensorFlow with
    ``validate=True``, and otherwise an index outside ``[0, C)``, which the adapters treat as such (§11.2)."""
    ops, backend = keras.ops, keras.backend.backend()
    # Keras cast them to the loss's dtype: its p-bit significand holds integers up to 2**p, rounds larger ones
    dtype = keras.backend.standardize_dtype(labels.dtype)
    largest = 2 ** {"float16": 11, "bfloat16": 8, "float32": 24}.get(dtype, 53)
    if num_classes - 1 > largest:
        raise ValueError(f"dtype: {dtype}, the loss's dtype, holds class indices up to {largest} only: use a wider one")
    # Integral and within the integer dtype (int64 where the backend has it, docs/conventions.md §6.1): beyond it a
    # float has no defined cast (the most negative integer, maybe ignore_index). NaN and inf fail both tests.
    bound = 2.0**63 if _x64() else 2.0**31
    within = ops.logical_and(ops.greater_equal(labels, -bound), ops.less(labels, bound))
    integral = ops.logical_and(ops.equal(labels, ops.floor(labels)), within)
    if validate is not False and _concrete(labels):
        if not bool(ops.all(integral)):  # the core's rules name what is wrong, with the values as given
            validation.validate_labels(labels, num_classes, ignore_index=ignore_index, soft=False)
    elif validate and backend == "tensorflow":  # an assertion in the graph (XLA drops it)
        import tensorflow as tf

        assertion = tf.debugging.Assert(ops.all(integral), ["labels: class indices must be integers"])
        with tf.control_dependencies([assertion]):
            labels = tf.identity(labels)
    outside = num_classes + (1 if ignore_index == num_classes else 0)
    return ops.cast(ops.where(integral, labels, outside), "int64" if _x64() else "int32")


def _concrete(x: Any) -> bool:
    """Whether ``x``'s values can be read now: not a symbolic TensorFlow tensor, not a JAX tracer, not inside
    ``torch.compile`` (a read there splits the graph)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly()
    if backend == "jax":
        import jax

        return not isinstance(x, jax.core.Tracer)
    from ._torch_kernels import traced

    return not traced(x)


def _current(variable: keras.Variable, like: Any) -> Any:
    """The variable's value when the step runs. A compiled JAX step takes only the model's own variables as
    inputs and would keep any other variable's value from the time it was traced: read this one through a host
    callback instead, so that a change (ReweightingCallback, set_weights) reaches the next step without a retrace.
    A pure one: reading the same weights again or not at all is harmless, and jax.checkpoint refuses io_callback."""
    if keras.backend.backend() != "jax" or _concrete(like):
        return variable.value
    import jax

    shape = jax.ShapeDtypeStruct(tuple(variable.shape), variable.dtype)
    return jax.pure_callback(lambda: np.asarray(variable.numpy()), shape)


# One function per backend: (logits, labels, weights, options, axis, validate) -> per-position losses.
def _tensorflow_losses(logits, labels, weights, options, axis, validate):
    from . import tensorflow as adapter

    return adapter._evaluate(logits, labels, weights, options, axis, validate, cross_replica=False)


def _jax_losses(logits, labels, weights, options, axis, validate):
    from . import jax as adapter

    validate = None if validate else validate  # True adds TensorFlow's graph assertions; here it is None's check
    return adapter.class_balanced_loss(logits, labels, weights, axis=axis, validate=validate, **options)


def _torch_losses(logits, labels, weights, options, axis, validate):
    from . import torch as adapter

    class_dim = min(1, len(logits.shape) - 1)  # PyTorch's: 1, or 0 for an unbatched (C,) input
    if len(labels.shape) == len(logits.shape):  # soft or multi-hot targets: their class axis moves too
        labels = labels.movedim(axis, class_dim)
    logits = logits.movedim(axis, class_dim)
    return adapter._loss(logits, labels, weights, None, options, validate is not False, False, None, False, names=False)


_BACKENDS = {"tensorflow": _tensorflow_losses, "jax": _jax_losses, "torch": _torch_losses}


def _logits_from_probabilities(probabilities: Any, loss: str) -> Any:
    """Logits that reproduce ``probabilities`` clipped to ``[eps, 1 - eps]`` as Keras' losses clip them (float16
    and bfloat16 in float32, where 1 - eps is below 1): ``log p``, softmax losses; ``log p - log(1 - p)``, others."""
    ops, eps = keras.ops, keras.config.epsilon()
    low = keras.backend.standardize_dtype(probabilities.dtype) in ("float16", "bfloat16")
    p = ops.clip(ops.cast(probabilities, "float32") if low else probabilities, eps, 1.0 - eps)
    return ops.log(p) if LOSSES[loss].activation == "softmax" else ops.log(p) - ops.log1p(-p)


@with_options_doc
@keras.saving.register_keras_serializable(package="cbloss", name="ClassBalancedLoss")
class ClassBalancedLoss(keras.losses.Loss):
    """The class-balanced loss as a Keras 3 loss on every backend: ``model.compile(loss=ClassBalancedLoss(counts,
    beta))``.

    Per position ``w_y * L_y(z)`` for a class index ``y``, ``sum_c t_c w_c L_c(z)`` for a target distribution
    ``t`` (docs/conventions.md §4-§6), computed by the running backend's adapter with the core's analytic
    gradient. The weights, ``class_balanced_weights(samples_per_class, beta, ...)`` or the given ``weights`` (with
    neither: unweighted), live in a non-trainable variable: :meth:`set_weights` and :class:`ReweightingCallback`
    change them without recompiling, and :meth:`get_config` carries the current ones.

    Args:
        samples_per_class: the (C,) class counts; needs ``beta``.
        beta: in [0, 1]; the effective number's parameter.
        weights: the (C,) class weights instead of counts (any array-like of real numbers).
        from_logits: True (default): ``y_pred`` are logits (exact; prefer them). False: probabilities of a final
            softmax or sigmoid, clipped to ``[eps, 1 - eps]`` as Keras clips them, then turned into logits.
        axis: the class axis of ``y_pred``.
        reduction: Keras' reduction of the per-position losses (``"sum_over_batch_size"``, ``"sum"``,
            ``"mean_with_sample_weight"``, ``"none"``); Keras applies ``sample_weight`` first.
        validate: None checks label values where they are concrete; True also asserts them in TensorFlow graphs
            (not under XLA); False checks no values (docs/conventions.md §11.2).
        **options: the loss options and the weight options below.

    Options:
    {unreduced_options}
    {weight_options}

    ``y_true``: class indices (``y_pred``'s shape without the class axis, or with a trailing size-1 axis), or soft
    or multi-hot targets shaped like ``y_pred``; class indices that Keras cast to floats are cast back, never
    truncated. ``ignore_index`` positions get loss 0 and a Keras mask. Saving and loading: docs/keras.md.

    Example:
        >>> import keras
        >>> from cbloss.adapters.keras import ClassBalancedLoss
        >>> loss = ClassBalancedLoss([100, 10, 1], beta=0.99, loss="focal", gamma=2.0)
        >>> round(float(loss([0, 2], [[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])), 6)
        1.407892
    """

    def __init__(
        self,
        samples_per_class: Any = None,
        beta: float | None = None,
        *,
        weights: Any = None,
        from_logits: bool = True,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = "class_balanced_loss",
        dtype: Any = None,
        validate: bool | None = None,
        **options: Unpack[KerasLossKwargs],
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.weight_options, self.options = split_options({**options, "reduction": "none"})
        if samples_per_class is not None:
            if weights is not None:
                raise ValueError("weights: give either samples_per_class (with beta) or weights, not both")
            if beta is None:
                raise ValueError("beta: required with samples_per_class")
            initial = class_balanced_weights(samples_per_class, beta, **self.weight_options)
            samples_per_class, beta = np.asarray(samples_per_class, dtype=np.float64).tolist(), float(beta)
        elif beta is not None:
            raise ValueError("samples_per_class: required with beta")
        else:
            initial = None if weights is None else validation.host_class_weights(weights, None, self._computed_in)
        self.samples_per_class, self.beta, self.axis = samples_per_class, beta, validation.check_axis(axis)
        self.from_logits = validation.check_choice("from_logits", from_logits, (True, False))
        self.validate = validation.check_choice("validate", validate, (None, True, False))
        self._variable = None if initial is None else _weights_variable(initial)

    @property
    def _computed_in(self) -> type:
        """The dtype the weights are kept and computed in: the loss's own where the backend holds it (§9)."""
        return np.float64 if self.dtype == "float64" and _x64() else np.float32

    @property
    def class_weights_variable(self) -> keras.Variable | None:
        """The non-trainable variable holding the (C,) class weights (None for an unweighted loss)."""
        return self._variable

    @property
    def class_weights(self) -> np.ndarray | None:
        """The current (C,) class weights as a float64 NumPy array (a copy), or None for an unweighted loss."""
        return None if self._variable is None else np.array(keras.ops.convert_to_numpy(self._variable), np.float64)

    def set_weights(self, weights: Any) -> None:
        """Replace the class weights by value (checked: C finite, non-negative numbers); the next call and a
        compiled train step see them without recompiling."""
        if self._variable is None:
            raise ValueError(
                "weights: this loss is unweighted; build it with samples_per_class and beta, or weights, "
                "to change its weights during training"
            )
        host = validation.host_class_weights(weights, int(self._variable.shape[0]), self._computed_in)
        self._variable.assign(host.astype(self._variable.dtype))

    def call(self, y_true: Any, y_pred: Any) -> Any:
        ops = keras.ops
        y_true, y_pred = ops.convert_to_tensor(y_true), ops.convert_to_tensor(y_pred)
        rank = len(y_pred.shape)
        axis = self.axis % rank if rank else self.axis
        squeeze = self.options.multi_label is None and rank and len(y_true.shape) == rank  # (N, 1) class indices
        if squeeze and y_true.shape[axis] == 1 and y_pred.shape[axis] != 1:
            y_true = ops.squeeze(y_true, axis=axis)
        if not self.from_logits:
            y_pred = _logits_from_probabilities(y_pred, self.options.loss)
        if self.beta is not None:  # built from counts: a class-count mismatch is the counts' fault
            validation.check_counts_match(self.samples_per_class, y_pred, axis)
        indices = self.options.multi_label is None and len(y_true.shape) == rank - 1
        labels = y_true
        if indices and "float" in keras.backend.standardize_dtype(y_true.dtype):
            labels = _class_indices(y_true, y_pred.shape[axis], self.options.ignore_index, self.validate)
        current = None if self._variable is None else _current(self._variable, y_pred)
        losses = _BACKENDS[keras.backend.backend()](y_pred, labels, current, self.options, axis, self.validate)
        if self.options.ignore_index is not None and indices:
            _set_keras_mask(losses, ops.not_equal(y_true, ops.cast(self.options.ignore_index, y_true.dtype)))
        return losses

    def get_config(self) -> dict:
        options = {name: value for name, value in self.options.items() if name != "reduction"}
        config = {**super().get_config(), **options, **self.weight_options, "axis": self.axis}
        weights = self.class_weights  # the current weights, maybe set during training
        weights = None if weights is None else weights.tolist()
        config.update(beta=self.beta, from_logits=self.from_logits, validate=self.validate, weights=weights)
        return {**config, "samples_per_class": self.samples_per_class}

    @classmethod
    def from_config(cls, config: dict) -> ClassBalancedLoss:
        config = dict(config)
        weights = config.pop("weights", None)
        if config.get("samples_per_class") is None:
            return cls(weights=weights, **config)
        loss = cls(**config)
        if weights is not None:
            loss.set_weights(weights)
        return loss


def _losses_of(model: keras.Model) -> list[ClassBalancedLoss]:
    found = keras.tree.flatten(getattr(model, "loss", None))  # a loss, or dicts and lists of them, nested
    return list({id(loss): loss for loss in found if isinstance(loss, ClassBalancedLoss)}.values())  # once each


class ReweightingCallback(keras.callbacks.Callback):
    """Sets a :class:`ClassBalancedLoss`'s class weights to ``schedule(epoch)`` at the start of every epoch.

    ``schedule`` maps an epoch to (C,) weights: a :mod:`cbloss.schedules` schedule (deferred re-weighting, a beta
    warm-up) or any callable. The weights change by value in the loss's variable, so ``model.fit`` (also with
    ``jit_compile=True``) keeps one compiled train step.

    Args:
        schedule: ``schedule(epoch) -> weights``.
        loss: the loss to update; None: the one :class:`ClassBalancedLoss` the model was compiled with.

    Example:
        >>> from cbloss.adapters.keras import ReweightingCallback
        >>> from cbloss.schedules import DeferredReweighting
        >>> callback = ReweightingCallback(DeferredReweighting([500, 50, 5], beta=0.9999, start=160))
        >>> # model.compile(loss=ClassBalancedLoss(...)); model.fit(..., callbacks=[callback])
    """

    def __init__(self, schedule: Callable[[int], Any], loss: ClassBalancedLoss | None = None):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"schedule: must be callable (epoch -> weights), got {type(schedule).__name__}")
        if loss is not None and not isinstance(loss, ClassBalancedLoss):
            raise TypeError(f"loss: must be a cbloss ClassBalancedLoss, got {type(loss).__name__}")
        self.schedule, self.loss = schedule, loss

    def _target(self) -> ClassBalancedLoss:
        if self.loss is not None:
            return self.loss
        found = _losses_of(self.model)
        if len(found) != 1:
            raise ValueError(
                f"loss: the model was compiled with {len(found)} cbloss ClassBalancedLoss objects; "
                "pass the one to update as ReweightingCallback(schedule, loss=...)"
            )
        return found[0]

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._target()  # fail before the first epoch, not in it

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._target().set_weights(self.schedule(epoch))
