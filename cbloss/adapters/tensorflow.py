"""TensorFlow / Keras adapter: :func:`class_balanced_loss` on ``tf.Tensor``s and a serialisable
:class:`ClassBalancedLoss` (``keras.losses.Loss``, Keras 3 with the TensorFlow backend).

This module only converts (tensors, class axis, dtype, device), validates eagerly, and registers the core's
analytic gradient with ``tf.custom_gradient``; the losses, weights and reductions are those of
:mod:`cbloss.losses`, evaluated on TensorFlow through the small Array-API namespace
:mod:`cbloss.adapters._tf_namespace` (array-api-compat does not support TensorFlow).

Where it runs:

- Eagerly, under ``tf.function`` and under ``tf.function(jit_compile=True)`` (XLA), with unknown (None)
  batch and spatial dimensions; only the class dimension must be known when tracing.
- Validation: eager calls check label values (class indices in range, soft targets summing to 1) and raise
  ``ValueError`` naming ``labels``. A traced call cannot raise on values: with ``validate=None`` (default) it
  checks nothing; with ``validate=True`` it adds ``tf.debugging`` assertions to the graph (they raise
  ``InvalidArgumentError`` when run; XLA drops them). Unchecked out-of-range labels give an error from
  ``tf.gather`` on CPU and are clamped silently under XLA: validate eagerly once, or use ``ignore_index``.
- ``tf.distribute``: inside ``strategy.run`` with more than one replica, ``reduction="mean"`` and
  ``"weighted_mean"`` divide by the denominator summed over all replicas (``cross_replica=True``, default),
  so that the per-replica losses add up to the global-batch loss and the all-reduced (summed) gradients
  equal a single device's gradient on the whole batch.
- float16/bfloat16 logits (mixed precision) are computed in float32 and the loss is float32; the gradient
  has the logits' dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

try:  # Keras 3; the adapter's function part works without it
    import keras
except ImportError:  # pragma: no cover - keras ships with tensorflow >= 2.16
    keras = None

from .._checks import NORMALIZATIONS, ZERO_COUNTS, check_choice
from ..losses import (
    LossName,
    LossOptions,
    Reduction,
    check_label_values,
    check_logits_and_labels,
    compute_dtype,
    loss_terms,
    prepare_weights,
    reduce_terms,
    soft_target_tolerance,
)
from ..primitives import Primitives, SharedExpPrimitives
from ..weights import class_balanced_weights, host_class_weights
from ._tf_namespace import namespace as xp

__all__ = ["ClassBalancedLoss", "TensorFlowPrimitives", "class_balanced_loss", "namespace"]

namespace = xp


class TensorFlowPrimitives(Primitives):
    """TensorFlow's own kernels for named pieces, each computing exactly the core's definition (the
    conformance suite checks them against the float64 oracle)."""

    def log_softmax(self, x: Any) -> Any:
        return tf.nn.log_softmax(x, axis=-1)

    def softmax_and_logsumexp(self, x: Any) -> tuple[Any, Any]:
        # One softmax kernel; logsumexp(x) = max(x) - log(max(p)) (max(p) >= 1 / C) without a second exp pass.
        p = tf.nn.softmax(x, axis=-1)
        return p, tf.reduce_max(x, axis=-1) - tf.math.log(tf.reduce_max(p, axis=-1))

    def take_label(self, x: Any, labels: Any) -> Any:
        rank = labels.shape.rank
        return tf.gather(x, labels, axis=rank, batch_dims=rank)

    def label_mask(self, labels: Any, num_classes: int) -> Any:
        return tf.equal(labels[..., None], tf.range(num_classes, dtype=labels.dtype))

    def take_weights(self, weights: Any, labels: Any) -> Any:
        return tf.gather(weights, labels)

    def positive_part(self, x: Any) -> Any:
        return tf.nn.relu(x)

    # Eagerly and in plain tf.function graphs every op is a pass over memory: TensorFlow's one-kernel sigmoid
    # beats the core's generic -expm1(-softplus(x)) (three kernels), and sigmoid(-x) its exp(-softplus(x)).
    def softplus_and_sigmoid(self, x: Any) -> tuple[Any, Any]:
        return self.softplus(x), tf.sigmoid(x)

    def softplus_and_sigmoids(self, x: Any, *, reuse: bool = False) -> tuple[Any, Any, Any]:
        return self.softplus(x), tf.sigmoid(x), tf.sigmoid(-x)


class TensorFlowXlaPrimitives(SharedExpPrimitives, TensorFlowPrimitives):
    """The primitives under XLA (``jit_compile=True``): XLA fuses the elementwise passes, so the core's forms
    that share each ``exp``/``log1p`` (:class:`cbloss.primitives.SharedExpPrimitives`: the sigmoid pieces, the
    softmax with its normaliser) beat TensorFlow's separate kernels (tf.sigmoid, tf.nn.softmax)."""


_PRIMITIVES = TensorFlowPrimitives(xp)
_XLA_PRIMITIVES = TensorFlowXlaPrimitives(xp)


try:  # private; TensorFlow's own tf.function uses it
    from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext as _graph_in_xla
except ImportError:  # pragma: no cover - a TensorFlow without it: the plain set everywhere
    _graph_in_xla = None


def _in_xla_context() -> bool:
    """Whether the current trace is compiled by XLA: inside ``tf.function(jit_compile=True)`` (also Keras'
    ``jit_compile=True`` train/predict functions), or a ``tf.function`` traced within one. False eagerly and
    in plain ``tf.function`` graphs, and if TensorFlow's (private) control-flow helper is not there."""
    if _graph_in_xla is None or tf.executing_eagerly():
        return False
    try:
        return bool(_graph_in_xla(tf.compat.v1.get_default_graph()))
    except Exception:  # the helper changed: the plain set is correct everywhere, only slower under XLA
        return False


def _primitives() -> TensorFlowPrimitives:
    """The primitive set for the current trace: the same definitions either way, faster kernels for each."""
    return _XLA_PRIMITIVES if _in_xla_context() else _PRIMITIVES


# ----------------------------------------------------------------------------------------------------------
# Checks (shapes and dtypes are static and always checked; values only eagerly)
# ----------------------------------------------------------------------------------------------------------
def _check_tensors(logits: tf.Tensor, labels: tf.Tensor, axis: int) -> tuple[int, bool]:
    """The core's shape and dtype checks (which let a traced None size match any size), after the two that
    only tracing raises: the rank and the class dimension must be known."""
    rank = logits.shape.rank
    if rank is None:
        raise ValueError("logits: the rank must be known (give the tf.function an input_signature with a rank)")
    if -rank <= axis < rank and logits.shape[axis] is None:
        raise ValueError(f"logits: the class dimension (axis {axis}) must be known, got shape {logits.shape}")
    return check_logits_and_labels(xp, logits, labels, axis)


def _graph_label_checks(
    labels: tf.Tensor, num_classes: int, soft: bool, ignore_index: int | None, given_dtype: tf.DType
) -> list:
    """``tf.debugging`` assertions for a traced call with ``validate=True`` (the eager checks' rules)."""
    if soft:
        tolerance = soft_target_tolerance(xp, given_dtype)
        return [
            tf.debugging.assert_non_negative(labels, message="labels: soft targets must be >= 0"),
            tf.debugging.assert_near(
                tf.reduce_sum(labels, axis=-1),
                tf.ones_like(labels[..., 0]),
                atol=tolerance,
                message="labels: soft targets must sum to 1 along the class axis",
            ),
        ]
    bad = (labels < 0) | (labels >= num_classes)
    if ignore_index is not None:
        bad &= labels != ignore_index
    return [tf.debugging.assert_equal(tf.reduce_any(bad), False, message="labels: class indices out of range")]


def _cross_replica_denominator(norm: tf.Tensor) -> tf.Tensor | None:
    """The mean's denominator summed over the replicas of the current ``tf.distribute`` strategy, or None
    outside a multi-replica replica context."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync <= 1:
        return None
    return context.all_reduce(tf.distribute.ReduceOp.SUM, xp.sum(norm))


# ----------------------------------------------------------------------------------------------------------
# The evaluation: mirrors cbloss.losses._evaluate, with tf.custom_gradient around the core
# ----------------------------------------------------------------------------------------------------------
def _evaluate(
    logits: Any,
    labels: Any,
    weights: Any,
    opts: LossOptions,
    axis: int,
    validate: bool | None,
    cross_replica: bool,
) -> tf.Tensor:
    logits = tf.convert_to_tensor(logits)
    labels = tf.convert_to_tensor(labels)
    axis, soft = _check_tensors(logits, labels, axis)
    num_classes = int(logits.shape[axis])
    eager = tf.executing_eagerly()
    check_values = eager if validate is None else bool(validate)
    dtype = compute_dtype(xp, logits.dtype)
    if isinstance(weights, tf.Variable):
        weights = tf.convert_to_tensor(weights)  # read outside the custom gradient: a constant of the loss
    w = prepare_weights(xp, weights, num_classes, dtype, logits.device, check_values and eager)
    last = logits.shape.rank - 1
    given_dtype = labels.dtype
    if soft:
        labels = xp.moveaxis(xp.astype(labels, dtype), axis, last)
    elif labels.dtype not in (tf.int32, tf.int64):
        labels = tf.cast(labels, tf.int64)
    checks = []
    if check_values and eager:
        check_label_values(xp, labels, num_classes, soft, opts.ignore_index, given_dtype)
    elif check_values:
        checks = _graph_label_checks(labels, num_classes, soft, opts.ignore_index, given_dtype)
    if checks:
        with tf.control_dependencies(checks):
            labels = tf.identity(labels)

    @tf.custom_gradient
    def forward(x: tf.Tensor):
        z = xp.moveaxis(xp.astype(x, dtype), axis, last)
        terms = loss_terms(_primitives(), z, labels, w, opts, soft=soft, with_grad=True)
        denominator = None
        if cross_replica and opts.reduction in ("mean", "weighted_mean"):
            denominator = _cross_replica_denominator(terms.norm)
        loss, grad = reduce_terms(xp, terms, opts.reduction, denominator)

        def backward(upstream: tf.Tensor) -> tf.Tensor:
            upstream = tf.cast(upstream, dtype)
            g = grad * (upstream[..., None] if opts.reduction == "none" else upstream)
            return tf.cast(xp.moveaxis(g, last, axis), x.dtype)

        return loss, backward

    return forward(logits)


def class_balanced_loss(
    logits: Any,
    labels: Any,
    weights: Any = None,
    *,
    loss: LossName = "softmax",
    gamma: float | None = None,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    axis: int = -1,
    validate: bool | None = None,
    cross_replica: bool = True,
) -> tf.Tensor:
    """Class-balanced loss of ``logits`` (a ``tf.Tensor``, class axis ``axis``) against ``labels``; the
    options are those of :func:`cbloss.class_balanced_loss`. Differentiable (``tf.GradientTape``) through
    the core's analytic gradient with respect to the logits; labels and weights are constants.

    ``weights``: (C,) class weights (NumPy, list, ``tf.Tensor`` or ``tf.Variable``) or None.
    ``validate``: None (default) checks label values when executing eagerly and nothing when traced; True
    also adds ``tf.debugging`` assertions to a traced graph (not under XLA); False checks no values.
    ``cross_replica``: inside ``tf.distribute`` ``strategy.run`` with several replicas, ``"mean"`` and
    ``"weighted_mean"`` divide by the global (all-reduced) denominator; False divides per replica.
    """
    opts = LossOptions.make(loss, gamma, reduction, label_smoothing, ignore_index)
    return _evaluate(logits, labels, weights, opts, axis, validate, cross_replica)


# ----------------------------------------------------------------------------------------------------------
# Keras
# ----------------------------------------------------------------------------------------------------------
def _set_keras_mask(x: tf.Tensor, mask: tf.Tensor) -> None:
    try:
        from keras.src.backend.common.masking import set_keras_mask
    except ImportError:  # pragma: no cover - older Keras 3 layouts
        x._keras_mask = mask
    else:
        set_keras_mask(x, mask)


if keras is not None:
    _KerasLoss = keras.losses.Loss
    _register = keras.saving.register_keras_serializable(package="cbloss", name="ClassBalancedLoss")
else:  # pragma: no cover

    class _KerasLoss:  # type: ignore[no-redef]
        def __init__(self, *args: Any, **kwargs: Any):
            raise ImportError("cbloss.adapters.tensorflow.ClassBalancedLoss needs Keras 3")

    def _register(cls):
        return cls


@_register
class ClassBalancedLoss(_KerasLoss):
    """The class-balanced loss as a Keras 3 loss: ``model.compile(loss=ClassBalancedLoss(counts, beta))``.

    The class weights are ``class_balanced_weights(samples_per_class, beta, normalize=normalize,
    zero_count=zero_count)`` (float64, computed once on the host), or the given ``weights``; with neither the
    loss is unweighted. ``loss``, ``gamma``, ``label_smoothing`` and ``ignore_index`` are the core's options.
    ``y_pred`` must be logits (no final softmax/sigmoid), class axis ``axis`` (last by default).

    ``y_true`` may be class indices shaped like ``y_pred`` without the class axis (or with a trailing size-1
    axis, as Keras datasets often give them; like ``SparseCategoricalCrossentropy``), or one-hot/soft targets
    shaped like ``y_pred`` (like ``CategoricalCrossentropy``: mixup/cutmix). Keras casts ``y_true`` to float
    before ``call``; class indices are cast back to integers.

    How it combines with Keras: ``call`` returns the per-position class-balanced losses ``w_y * L`` (the
    core's ``reduction="none"``); Keras then multiplies by ``sample_weight`` and applies its own
    ``reduction``: ``"sum_over_batch_size"`` (default; the mean over positions, which with hard labels and no
    sample weights is the core's ``"mean"``), ``"sum"``, ``"mean_with_sample_weight"`` (sum divided by the sum
    of sample weights) or ``"none"``. So class weights and sample weights multiply. Positions labelled
    ``ignore_index`` get loss 0 and a Keras mask, so that ``"sum_over_batch_size"`` divides by the number of
    counted positions only. Under ``tf.distribute`` Keras divides each replica's mean by the number of
    replicas and sums the gradients: the global-batch mean for equal per-replica batches (Keras' own rule).
    """

    def __init__(
        self,
        samples_per_class: Any = None,
        beta: float | None = None,
        *,
        weights: Any = None,
        loss: LossName = "softmax",
        gamma: float | None = None,
        normalize: str | None = "classes",
        zero_count: str = "error",
        label_smoothing: float = 0.0,
        ignore_index: int | None = None,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = "class_balanced_loss",
        dtype: Any = None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(
                f"cbloss.adapters.tensorflow.ClassBalancedLoss needs the Keras TensorFlow backend, "
                f"got {keras.backend.backend()!r} (use cbloss.adapters.jax or .torch there)"
            )
        check_choice("normalize", normalize, NORMALIZATIONS)
        check_choice("zero_count", zero_count, ZERO_COUNTS)
        if samples_per_class is not None:
            if weights is not None:
                raise ValueError("weights: give either samples_per_class (with beta) or weights, not both")
            if beta is None:
                raise ValueError("beta: required with samples_per_class")
            class_weights = class_balanced_weights(samples_per_class, beta, normalize=normalize, zero_count=zero_count)
            samples_per_class = np.asarray(samples_per_class, dtype=np.float64).tolist()
            beta = float(beta)
        elif weights is not None:
            class_weights = host_class_weights(weights)
        else:
            class_weights = None
        self.samples_per_class = samples_per_class
        self.beta = beta
        self.normalize = normalize
        self.zero_count = zero_count
        self.class_weights = class_weights  # float64 NumPy (C,) or None
        self.options = LossOptions.make(loss, gamma, "none", label_smoothing, ignore_index)
        self.axis = int(axis)

    def call(self, y_true: Any, y_pred: Any) -> tf.Tensor:
        y_pred = tf.convert_to_tensor(y_pred)
        y_true = tf.convert_to_tensor(y_true)
        rank = y_pred.shape.rank
        axis = self.axis % rank if rank else self.axis
        if y_true.dtype.is_floating and y_true.shape.rank is not None and rank is not None:
            if y_true.shape.rank == rank - 1:
                y_true = tf.cast(y_true, tf.int64)
            elif y_true.shape.rank == rank and y_true.shape[axis] == 1 and y_pred.shape[axis] != 1:
                y_true = tf.cast(tf.squeeze(y_true, axis=axis), tf.int64)
        losses = _evaluate(y_pred, y_true, self.class_weights, self.options, axis, None, cross_replica=False)
        if self.options.ignore_index is not None and not y_true.dtype.is_floating:
            _set_keras_mask(losses, tf.not_equal(y_true, tf.cast(self.options.ignore_index, y_true.dtype)))
        return losses

    def get_config(self) -> dict:
        config = super().get_config()
        o = self.options
        config.update(
            samples_per_class=self.samples_per_class,
            beta=self.beta,
            weights=None
            if self.samples_per_class is not None or self.class_weights is None
            else self.class_weights.tolist(),
            loss=o.loss,
            gamma=o.gamma,
            normalize=self.normalize,
            zero_count=self.zero_count,
            label_smoothing=o.label_smoothing,
            ignore_index=o.ignore_index,
            axis=self.axis,
        )
        return config

    def __repr__(self) -> str:
        o = self.options
        n = None if self.class_weights is None else len(self.class_weights)
        return (
            f"ClassBalancedLoss(num_classes={n}, beta={self.beta}, loss={o.loss!r}, gamma={o.gamma}, "
            f"reduction={self.reduction!r})"
        )
