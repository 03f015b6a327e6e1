"""TensorFlow: :func:`class_balanced_loss` on ``tf.Tensor``s (the Keras loss is :mod:`cbloss.adapters.keras`'s).

A binding (docs/conventions.md §1, §13): it converts to the core's layout (class axis last, compute dtype) with
the Array-API namespace :mod:`cbloss.adapters._tf_namespace`, validates, and registers the gradient of
:func:`cbloss.engine.evaluate` with ``tf.custom_gradient``. Eager, ``tf.function`` or XLA, with unknown batch
and spatial dimensions (§8). Its ``tf.distribute`` bindings are :mod:`cbloss.adapters._tf_distributed`'s."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from .. import validation
from ..engine import evaluate
from ..options import LossOptions, loss_options, with_options_doc
from ..primitives import Primitives, SharedExpPrimitives
from ..reductions import scaled_gradient
from ._tf_distributed import all_reduce_counts
from ._tf_distributed import global_sum as global_sum_of
from ._tf_namespace import as_tensor
from ._tf_namespace import namespace as xp
from .keras import ClassBalancedLoss  # the Keras 3 loss of every backend; this import path stays

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..options import LossKwargs


__all__ = [
    "ClassBalancedLoss",
    "TensorFlowPrimitives",
    "TensorFlowXlaPrimitives",
    "all_reduce_counts",
    "class_balanced_loss",
]

try:  # private; TensorFlow's own tf.function and tf.custom_gradient use them
    from tensorflow.python.eager.record import should_record_backprop as _taped
    from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext as _graph_in_xla
except ImportError:  # pragma: no cover - a TensorFlow without them: the plain set and an eager gradient always
    _graph_in_xla = _taped = None


# Kernels for named pieces, each with the core's definition (docs/conventions.md §13; cbloss/primitives.py).
class _TensorFlowIndexing(Primitives):
    """Class-axis indexing with ``tf.gather``, whose shapes stay dynamic where the dimensions are unknown. For an
    index outside ``[0, C)`` its gather fails on the CPU, reads 0 on a GPU and clamps it to the nearest class under
    XLA, which may also compile a graph traced without it: such a label's weight is NaN, in every kernel set."""

    def take_label(self, x: Any, labels: Any) -> Any:
        rank = labels.shape.rank
        return tf.gather(x, labels, axis=rank, batch_dims=rank)

    def label_mask(self, labels: Any, num_classes: int) -> Any:
        return tf.equal(labels[..., None], tf.range(num_classes, dtype=labels.dtype))  # labels: int64

    def take_weights(self, weights: Any, labels: Any) -> Any:
        outside = validation.labels_out_of_range(xp, labels, weights.shape[0], None)
        return tf.where(outside, tf.constant(np.nan, weights.dtype), tf.gather(weights, labels))


class TensorFlowPrimitives(_TensorFlowIndexing):
    """Eagerly and in plain ``tf.function`` graphs every op is a pass over memory: TensorFlow's one-kernel
    ``tf.nn.softmax`` and ``tf.sigmoid`` beat the core's forms built from several ops."""

    def softmax_and_logsumexp(self, x: Any) -> tuple[Any, Any]:
        # p = exp(x - max) / S has max(p) = 1 / S, so logsumexp(x) = max(x) + log(S) = max(x) - log(max(p)).
        p = tf.nn.softmax(x, axis=-1)
        return p, tf.reduce_max(x, axis=-1) - tf.math.log(tf.reduce_max(p, axis=-1))

    def softplus(self, x: Any) -> Any:
        # the core's max(x, 0) + log1p(exp(-|x|)), max(x, 0) as one relu kernel, not a comparison, zeros and a select
        return tf.nn.relu(x) + tf.math.log1p(tf.exp(-tf.abs(x)))

    def softplus_and_sigmoids(self, x: Any) -> tuple[Any, Any, Any]:
        return self.softplus(x), tf.sigmoid(x), tf.sigmoid(-x)

    def softplus_pair_and_sigmoids(self, x: Any) -> tuple[Any, Any, Any, Any]:
        # both sides' softplus from one log1p(exp(-|x|)), and the two sigmoid kernels they share
        log1p_e = tf.math.log1p(tf.exp(-tf.abs(x)))
        return tf.nn.relu(x) + log1p_e, tf.nn.relu(-x) + log1p_e, tf.sigmoid(x), tf.sigmoid(-x)


class TensorFlowXlaPrimitives(SharedExpPrimitives, _TensorFlowIndexing):
    """Under XLA the elementwise passes fuse, so the core's forms that share each ``exp``/``log1p`` win: the
    sigmoids of :class:`~cbloss.primitives.SharedExpPrimitives`, the softmax and its normaliser from one ``exp``."""


_PRIMITIVES = TensorFlowPrimitives(xp)
_XLA_PRIMITIVES = TensorFlowXlaPrimitives(xp)


def _in_xla_context() -> bool:
    """Whether XLA compiles the current trace (``jit_compile=True``, Keras' too, or a ``tf.function`` traced in
    one); False eagerly, in plain graphs, and where TensorFlow's private helper is missing (None) or has changed."""
    try:
        return not tf.executing_eagerly() and bool(_graph_in_xla(tf.compat.v1.get_default_graph()))
    except Exception:
        return False


def _primitives() -> Primitives:
    """The kernel set for the current trace: the same definitions either way, the faster kernels for each."""
    return _XLA_PRIMITIVES if _in_xla_context() else _PRIMITIVES


def _assertions(labels: tf.Tensor, num_classes: int, soft: bool, opts: LossOptions, weights: Any) -> list:
    """The eager value checks' rules (``validation.traced_checks``) as ``tf.debugging`` assertions."""
    rules = validation.traced_checks(xp, labels, num_classes, soft, opts, weights)
    # Assert prints its data one after another: the message without checkify's placeholders, then the values.
    return [tf.debugging.Assert(rule.valid, [rule.message.replace(" {}", ""), *rule.values]) for rule in rules]


def _shape_checks(given: tf.Tensor, logits: tf.Tensor, soft: bool, axis: int, multi_label: bool) -> list:
    """Where the trace cannot compare the labels' shape with the logits' (a None size on either side), the ops that
    compare them when the graph runs: an assertion naming the labels and, since XLA drops assertions, a
    concatenation of empty tensors, which needs every size equal and so fails XLA's compilation otherwise.
    Without them, the broadcasting elementwise ops would take (1, C) or (N, 1) labels silently."""
    expected = logits.shape if soft else logits.shape[:axis] + logits.shape[axis + 1 :]
    if given.shape.is_fully_defined() and expected.is_fully_defined():
        return []  # compared by validation.check_class_axis
    shape = tf.shape(logits)
    sizes = (tf.shape(given), shape if soft else tf.concat([shape[:axis], shape[axis + 1 :]], 0))
    rule = validation.label_shape_rule(soft, multi_label)
    assertion = tf.debugging.assert_equal(*sizes, message=f"labels: {rule} (labels' shape, logits' shape)")
    empty = [tf.zeros(tf.concat([size, [0]], 0), tf.int8) for size in sizes]
    return [assertion, tf.concat(empty, axis=-1, name="labels_must_have_the_logits_shape")]


# Plain Python on static values throughout: AutoGraph has nothing to convert, and fails on array-api-compat's code.
@tf.autograph.experimental.do_not_convert
def _evaluate(
    logits: Any, labels: Any, weights: Any, opts: LossOptions, axis: int, validate: bool | None, cross_replica: bool
) -> tf.Tensor:
    validation.check_choice("validate", validate, (None, True, False))
    validation.check_choice("cross_replica", cross_replica, (True, False))
    logits, given, axis = as_tensor(logits, "logits"), as_tensor(labels, "labels"), validation.check_axis(axis)
    tensors = {"logits": logits, "labels": given}
    if tf.is_tensor(weights):  # a variable, or a sparse or ragged tensor (an error naming them); host ones as given
        weights = tensors["weights"] = as_tensor(weights, "weights")
    for name, rank in ((name, tensor.shape.rank) for name, tensor in tensors.items()):
        if rank is None:
            raise ValueError(f"{name}: the rank must be known (give the tf.function an input_signature with a rank)")
    rank = logits.shape.rank
    if -rank <= axis < rank and logits.shape[axis] is None:
        raise ValueError(f"logits: the class dimension (axis {axis}) must be known, got shape {logits.shape}")
    if tf.is_tensor(weights) and weights.shape.rank == 1 and weights.shape[0] is None and -rank <= axis < rank:
        # (None,) weights (an input_signature): C entries, compared when the graph runs (XLA: when it compiles)
        weights = tf.ensure_shape(weights, [logits.shape[axis]], name="weights_must_have_one_entry_per_class")
    eager = tf.executing_eagerly()
    check = eager if validate is None else bool(validate)
    inputs = validation.prepare_inputs(xp, logits, given, weights, None, opts, axis, xp.device(logits), check and eager)
    labels, w, soft, axis, dtype = inputs.labels, inputs.weights, inputs.soft, inputs.axis, inputs.dtype
    # Constants (docs/conventions.md §10): a tape that watches a weights variable or soft targets but not the logits
    # would otherwise differentiate the loss's own operations with respect to them.
    labels, w = tf.stop_gradient(labels), None if w is None else tf.stop_gradient(w)
    num_classes, last = int(logits.shape[axis]), rank - 1
    checks = [] if eager else _shape_checks(given, logits, soft, axis, opts.multi_label is not None)
    if check and not eager:  # soft targets as given: their sums are checked to the tolerance of their own dtype
        as_given = xp.moveaxis(given, axis, last) if soft and given.dtype.is_floating else labels
        checks += _assertions(as_given, num_classes, soft, opts, w)
    if checks:
        with tf.control_dependencies(checks):
            labels = tf.identity(labels)
    ops, global_sum = _primitives(), global_sum_of(cross_replica)
    if w is None and not soft:  # gathered: an out-of-range label is NaN for every loss (_TensorFlowIndexing)
        w = tf.ones((num_classes,), dtype)

    @tf.custom_gradient
    def forward(x: tf.Tensor) -> Any:
        z = xp.moveaxis(xp.astype(x, dtype), axis, last)

        def run(with_grad: bool) -> tuple[Any, Any]:
            return evaluate(ops, z, labels, w, opts, soft=soft, with_grad=with_grad, global_sum=global_sum)

        # A graph computes the gradient only if it is asked for (unused ops are pruned); eagerly, only under a tape.
        loss, grad = run(not eager or _taped is None or bool(_taped([x])))

        def backward(upstream: tf.Tensor) -> tf.Tensor:
            g = grad if grad is not None else run(True)[1]
            g = scaled_gradient(xp, g, tf.cast(upstream, dtype), opts.reduction)
            return tf.cast(xp.moveaxis(g, last, axis), x.dtype)

        return loss, backward

    return forward(logits)


@with_options_doc
@tf.autograph.experimental.do_not_convert  # options are read as Python numbers, also inside a tf.function
def class_balanced_loss(
    logits: Any,
    labels: Any,
    weights: Any = None,
    *,
    axis: int = -1,
    validate: bool | None = None,
    cross_replica: bool = True,
    **options: Unpack[LossKwargs],
) -> tf.Tensor:
    """Class-balanced loss of ``logits`` against ``labels`` on ``tf.Tensor``s (docs/conventions.md §4-§8): for a
    class index ``y`` the per-position loss is ``w_y * L_y(z)``, for a target distribution ``t`` it is
    ``sum_c t_c w_c L_c(z)``, with ``L`` the unweighted loss chosen by ``loss``. ``tf.GradientTape`` gets the
    core's analytic gradient with respect to the logits; labels and weights are constants (§10).

    Args:
        logits: floating tensor (or array), class axis ``axis``; float16/bfloat16 are computed in float32 (§9).
        labels: integer class indices shaped like ``logits`` without the class axis, or soft targets shaped like
            ``logits`` (mixup, cutmix).
        weights: the (C,) class weights (NumPy, list, ``tf.Tensor`` or ``tf.Variable``), or None: unweighted.
        axis: the class axis.
        validate: None checks label values eagerly and nothing when traced; True also adds ``tf.debugging``
            assertions to a traced graph (XLA drops them); False checks no values (§11.2). Shapes, dtypes and
            options are always checked.
        cross_replica: inside ``strategy.run`` of a ``tf.distribute`` strategy with several replicas,
            ``"mean"`` and ``"weighted_mean"`` divide by the denominator summed over the replicas (§12).
        **options: the loss options below.

    Options:
    {options}

    Returns:
        The loss: a 0-d tensor, or per position for ``reduction="none"``; float32 for float16/bfloat16 logits.

    Example:
        >>> import tensorflow as tf
        >>> from cbloss.adapters.tensorflow import class_balanced_loss
        >>> z = tf.constant([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
        >>> round(float(class_balanced_loss(z, tf.constant([0, 2]), [0.5, 1.0, 2.0], loss="focal")), 6)
        1.097879
    """
    return _evaluate(logits, labels, weights, loss_options(**options), axis, validate, cross_replica)
