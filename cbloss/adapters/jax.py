"""JAX adapter: class-balanced losses on ``jax.Array``s, pure and safe under ``jit``/``grad``/``vmap``/sharding.

The math and checks are the core's (:mod:`cbloss.engine`, :mod:`cbloss.validation`). This module converts (class
axis last, float16/bfloat16 in float32), checks values where they are concrete (§11.2), and registers the core's
analytic gradient with :func:`jax.custom_jvp` (§13); labels and weights are constants (§10). Its collective for
class counts is :mod:`cbloss.adapters._jax_distributed`'s. See docs/jax.md."""

from __future__ import annotations

import functools
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import checkify

from .. import validation
from .._immutable import Immutable
from .._namespace import as_array
from ..engine import evaluate
from ..options import LossOptions, describe, loss_options, split_options, with_options_doc
from ..validation import validate_labels
from ..weights import class_balanced_weights
from ._jax_distributed import all_reduce_counts
from ._jax_kernels import OPS, JaxPrimitives, index_dtype, is_traced, narrowed_on_host, on_one_axis_of_positions

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..options import LossKwargs, ModuleKwargs

__all__ = ["ClassBalancedLoss", "JaxPrimitives", "all_reduce_counts", "class_balanced_loss", "validate_labels"]


# The traced path: the core's engine, with its analytic gradient as the JVP.
def _evaluate(z, labels, weights, sample_weight, opts: LossOptions, soft: bool, axis_name: Any, with_grad: bool):
    """``(loss, d loss / d z)`` from the engine; the means' denominator ``psum``-ed over ``axis_name``."""
    total = None if axis_name is None else functools.partial(lax.psum, axis_name=axis_name)
    kwargs = dict(soft=soft, with_grad=with_grad, sample_weight=sample_weight, global_sum=total)
    return evaluate(OPS, z, labels, weights, opts, **kwargs)


@functools.partial(jax.custom_jvp, nondiff_argnums=(4, 5, 6))
def _loss(z, labels, weights, sample_weight, opts, soft, axis_name):
    """The loss alone: what runs when nothing is differentiated."""
    return _evaluate(z, labels, weights, sample_weight, opts, soft, axis_name, with_grad=False)[0]


@_loss.defjvp
def _loss_jvp(opts, soft, axis_name, primals, tangents):
    """The loss and its tangent ``<grad, dz>``: per position (a sum over the class axis) for ``"none"``, else the
    full contraction. Linear in ``dz`` with ``grad`` a residual, so reverse mode transposes it to
    ``cotangent * grad``. The caller stops the gradient of the labels and weights: only ``z`` is perturbed."""
    z, labels, weights, sample_weight = primals
    dz = tangents[0]
    value, grad = _evaluate(z, labels, weights, sample_weight, opts, soft, axis_name, with_grad=True)
    product = grad * dz
    return value, jnp.sum(product, axis=-1) if opts.reduction == "none" else jnp.sum(product)


@functools.partial(jax.jit, static_argnames=("opts", "axis", "soft", "axis_name", "check"))
def _compiled(
    logits, labels, weights, sample_weight, opts: LossOptions, axis: int, soft: bool, axis_name: Any, check: bool
):
    """Cast and move the class axis last (JAX differentiates these), then the engine under the custom JVP. The
    weights come in the compute dtype (``validation.prepare_weights``), the labels as given."""
    dtype = validation.compute_dtype(jnp, logits.dtype)
    num_classes = logits.shape[axis]
    z = jnp.moveaxis(logits.astype(dtype), axis, -1)
    labels = validation.engine_labels(jnp, labels, soft, axis, index_dtype(), opts.ignore_index)
    if check:  # the labels as given: soft targets' sums to their own dtype's tolerance
        rules = validation.traced_checks(jnp, labels, num_classes, soft, opts, weights, sample_weight)
        for rule in rules:
            checkify.check(rule.valid, rule.message, *rule.values)
    labels = labels.astype(dtype) if soft else labels
    if weights is None and not soft:
        weights = jnp.ones((num_classes,), dtype)  # gathered, so an out-of-range label gives NaN for every loss
    # Constants (docs/conventions.md §10): their tangents are symbolic zeros, so the JVP rule perturbs z only.
    labels, weights, sample_weight = lax.stop_gradient((labels, weights, sample_weight))
    # softmax_focal's dense evaluation (soft targets, label smoothing) on one axis of positions; the other losses
    # fuse better in the N-D form. Not under an explicit-sharding mesh, where merging a sharded axis with others is
    # a resharding.
    flatten = opts.kind == "softmax_focal" and (soft or bool(opts.label_smoothing)) and z.ndim != 2
    if not flatten or jax.typeof(z).sharding.mesh.axis_names:
        return _loss(z, labels, weights, sample_weight, opts, soft, axis_name)
    loss = functools.partial(_loss, opts=opts, soft=soft, axis_name=axis_name)
    return on_one_axis_of_positions(loss, z, labels, weights, sample_weight, soft, opts.reduction == "none")


def _call(logits, labels, weights, sample_weight, opts, axis, axis_name, validate, from_counts=False) -> jax.Array:
    validation.check_choice("validate", validate, (None, True, False, "checkify"))
    if validate is True and any(is_traced(a) for a in (labels, weights, sample_weight)):
        raise TypeError(
            "validate: True needs concrete labels, weights and sample_weight, got traced ones (use 'checkify')"
        )
    # The labels' values are checked as given: jnp.asarray narrows int64 and float64 without x64 (wrapping 2**32 + k
    # to k), and makes a tracer of a NumPy array inside jit. Class indices are narrowed here without wrapping.
    given = labels if is_traced(labels) else as_array(labels, "labels")
    logits = logits if is_traced(logits) else jnp.asarray(as_array(logits, "logits"))
    labels = given if is_traced(given) else jnp.asarray(narrowed_on_host(given, opts.ignore_index))
    multi_label = opts.multi_label is not None
    # the labels' dtype as given in the errors (float64 class indices are float32 here without x64)
    axis, soft = validation.check_class_axis(jnp, logits, given, axis, multi_label=multi_label)
    num_classes = logits.shape[axis]
    if not soft:  # the engine's index dtype (int32 without x64) narrows uint32 labels too
        validation.check_ignore_index_kept(opts.ignore_index, given.dtype, index_dtype())
    if from_counts and weights is not None:
        validation.check_counts_match(weights, logits, axis)  # a class-count mismatch is the counts' fault
    eager = validate is None or validate is True
    if eager and not is_traced(given):
        validate_labels(
            given, num_classes, ignore_index=opts.ignore_index, soft=soft, axis=axis, multi_label=multi_label
        )
    dtype = validation.compute_dtype(jnp, logits.dtype)
    validation.check_gamma_within(jnp, opts.gamma, dtype)
    positions = labels.shape[:axis] + labels.shape[axis + 1 :] if soft else labels.shape
    # concrete values closed over by a jitted function are read now, where their checks can raise
    with jax.ensure_compile_time_eval():
        weights = validation.prepare_weights(jnp, weights, num_classes, dtype, None, eager and not is_traced(weights))
        check = eager and not is_traced(sample_weight)
        sample_weight = validation.prepare_sample_weight(jnp, sample_weight, positions, dtype, None, check)
    return _compiled(logits, labels, weights, sample_weight, opts, axis, soft, axis_name, validate == "checkify")


# Public API.
@with_options_doc
def class_balanced_loss(
    logits: Any,
    labels: Any,
    weights: Any = None,
    *,
    sample_weight: Any = None,
    axis: int = -1,
    axis_name: Hashable | None = None,
    validate: bool | str | None = None,
    **options: Unpack[LossKwargs],
) -> jax.Array:
    r"""Class-balanced loss of ``logits`` against ``labels`` (docs/conventions.md §4-§8).

    .. math::

        \ell(z, y) = s \, w_y \, L_y(z), \qquad \ell(z, t) = s \sum_c t_c \, w_c \, L_c(z)

    for a class index ``y`` or a target distribution ``t``, with ``L`` the unweighted loss chosen by ``loss`` and
    ``s`` the position's sample weight (1 without ``sample_weight``). Pure; both differentiation modes use the
    core's analytic gradient (docs/jax.md).

    Args:
        logits: floating point, class axis ``axis`` (float16/bfloat16 computed in float32; float64 needs x64).
        labels: class indices (``logits``' shape without the class axis), or soft or multi-hot targets
            (``logits``' shape).
        weights: the (C,) class weights (:func:`cbloss.class_balanced_weights`), or None.
        sample_weight: one weight ``>= 0`` per position (the logits' shape without the class axis), or None; it
            multiplies each position's loss (docs/conventions.md §7).
        axis: the class axis.
        axis_name: a mapped axis over which the means' denominator is ``lax.psum``-ed (each device returns its
            shard's share).
        validate: None (check values when concrete), True (``TypeError`` when traced), False (never), or
            ``"checkify"`` (emit ``checkify`` checks).
        **options: the loss options below.

    Options:
    {options}

    Returns:
        The loss: 0-d, or per position for ``reduction="none"``; float32 for float16/bfloat16 logits.

    Example:
        >>> import jax, jax.numpy as jnp, cbloss
        >>> from cbloss.adapters.jax import class_balanced_loss
        >>> w = cbloss.class_balanced_weights([100, 10, 1], beta=0.99)
        >>> z = jnp.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]]); y = jnp.array([0, 2])
        >>> round(float(class_balanced_loss(z, y, w, loss="focal")), 5)
        1.40789
        >>> jax.grad(lambda q: class_balanced_loss(q, y, w, loss="focal"))(z).shape
        (2, 3)
        >>> round(float(class_balanced_loss(z, y, w, sample_weight=jnp.array([1.0, 0.0]), loss="focal")), 5)
        0.00418
    """
    return _call(logits, labels, weights, sample_weight, loss_options(**options), axis, axis_name, validate)


_FIELDS = ("weights", "options", "axis", "axis_name", "from_counts", "beta", "normalize")


@with_options_doc
@jax.tree_util.register_pytree_node_class
class ClassBalancedLoss(Immutable):
    """An immutable class-balanced loss: a pytree whose only leaf is its (C,) weights (a ``jax.Array``), so it can
    be a jit argument, a closed-over constant or part of a train state.

    ``ClassBalancedLoss(samples_per_class, beta, **options)`` computes the weights once on the host
    (:func:`cbloss.class_balanced_weights`); ``from_weights(w, **options)`` takes given ones (None: unweighted).
    Calling it is :func:`class_balanced_loss` with those weights. Losses with equal configuration and weights are
    equal and hash equally, so one can be a static ``jit`` argument (docs/jax.md).

    Options:
    {options}
    {weight_options}

    Example:
        >>> import jax.numpy as jnp
        >>> from cbloss.adapters.jax import ClassBalancedLoss
        >>> loss_fn = ClassBalancedLoss([100, 10, 1], beta=0.99, loss="focal")
        >>> round(float(loss_fn(jnp.array([[2.0, 0.0, -1.0]]), jnp.array([0]))), 6)
        0.008352
    """

    weights: jax.Array | None
    options: LossOptions
    axis: int
    axis_name: Hashable | None
    from_counts: bool
    beta: float | None
    normalize: str | None
    __slots__ = ("__weakref__", *_FIELDS)

    def __init__(
        self,
        samples_per_class: Any,
        beta: float,
        *,
        axis: int = -1,
        axis_name: Hashable | None = None,
        **options: Unpack[ModuleKwargs],
    ):
        weight_opts, opts = split_options(options)
        weights = jnp.asarray(class_balanced_weights(samples_per_class, beta, **weight_opts))
        self._fields(weights, opts, validation.check_axis(axis), axis_name, True, float(beta), weight_opts["normalize"])

    @classmethod
    def from_weights(
        cls, weights: Any, *, axis: int = -1, axis_name: Hashable | None = None, **options: Unpack[LossKwargs]
    ) -> ClassBalancedLoss:
        """A loss with given (C,) class weights (finite, >= 0; any array or sequence), or None: unweighted."""
        host = None if weights is None else _stored_weights(weights)
        return cls._make(host, loss_options(**options), validation.check_axis(axis), axis_name, False, None, None)

    @classmethod
    def _make(cls, *values: Any) -> ClassBalancedLoss:
        self = object.__new__(cls)
        self._fields(*values)
        return self

    def _fields(self, *values: Any) -> None:
        self._set(**dict(zip(_FIELDS, values, strict=True)))

    # pytree: the weights are the only leaf; the options, axis, axis_name and whether the weights come from class
    # counts (which decides the name a class-count mismatch blames) are the configuration. beta and normalize
    # are how the weights were made, not configuration: losses that differ only there share a treedef (they
    # stack with tree_map), and tree transformations hand them back as None.
    def tree_flatten(self) -> tuple[tuple[Any], tuple[Any, ...]]:
        return (self.weights,), (self.options, self.axis, self.axis_name, self.from_counts)

    @classmethod
    def tree_unflatten(cls, aux: tuple[Any, ...], children: tuple[Any, ...]) -> ClassBalancedLoss:
        return cls._make(children[0], *aux, None, None)

    # Equality and hash agree with the pytree: the same configuration (the treedef) and equal leaves.
    def _key(self) -> tuple[Any, ...]:
        """The configuration and the weights by value, hashable: their dtype, shape and bytes (-0.0 read as 0.0),
        or None for an unweighted loss. Traced weights have no value yet: they compare by identity, which is what
        JAX needs when it hashes a function it is handed (``jax.jit(loss)`` inside a traced step)."""
        config, weights = self.tree_flatten()[1], self.weights
        # a leaf that is no concrete array (a tracer, or what tree_map put there: a shape, a ShapeDtypeStruct)
        if weights is None or is_traced(weights) or not isinstance(weights, (jax.Array, np.ndarray)):
            return config, None if weights is None else id(weights)
        host = np.asarray(weights)
        return config, host.dtype.str, host.shape, (host + host.dtype.type(0)).tobytes()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._key())

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:  # copy, deepcopy and pickle (the fields are immutable)
        return (self._make, tuple(getattr(self, name) for name in _FIELDS))

    def with_weights(self, weights: Any) -> ClassBalancedLoss:
        """The same loss with new (C,) class weights, for a schedule (:mod:`cbloss.schedules`): a jitted step
        that takes the loss as an argument sees the new weights without retracing. Concrete weights are checked."""
        if not is_traced(weights):
            weights = _stored_weights(weights, self.num_classes)
        else:  # traced: its shape is known, its values are not; in the stored dtype, so a loop's carry keeps its type
            validation.check_weights_shape(weights.shape, self.num_classes)
            weights = weights.astype(jax.dtypes.canonicalize_dtype(jnp.float64))
        return self.tree_unflatten(self.tree_flatten()[1], (weights,))

    @property
    def num_classes(self) -> int | None:
        shape = getattr(self.weights, "shape", None)  # None for an unweighted loss, or a leaf tree_map made no array
        return int(shape[-1]) if shape else None

    def __call__(
        self, logits: Any, labels: Any, sample_weight: Any = None, *, validate: bool | str | None = None
    ) -> jax.Array:
        """The loss, see :func:`class_balanced_loss`. For a loss built from ``samples_per_class``, as many counts
        as the logits have classes (an error naming ``samples_per_class`` otherwise)."""
        opts, axis, axis_name = self.options, self.axis, self.axis_name
        return _call(logits, labels, self.weights, sample_weight, opts, axis, axis_name, validate, self.from_counts)

    def __repr__(self) -> str:
        return (
            f"ClassBalancedLoss(num_classes={self.num_classes}, beta={self.beta}, normalize={self.normalize!r}, "
            f"{describe(self.options)}, axis={self.axis}, axis_name={self.axis_name!r})"
        )


def _stored_weights(weights: Any, num_classes: int | None = None) -> jax.Array:
    """Given class weights, checked, in JAX's widest floating dtype (float32 without x64), which holds them."""
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
    return jnp.asarray(validation.host_class_weights(weights, num_classes, dtype), dtype)
