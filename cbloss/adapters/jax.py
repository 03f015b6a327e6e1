"""JAX adapter: class-balanced losses on ``jax.Array``s, pure and safe under ``jit``/``grad``/``vmap``/sharding.

The formulas, weights and reductions are the core's (:mod:`cbloss.losses`); this module only converts
(class axis moved last, float16/bfloat16 computed in float32), validates eagerly where the values are concrete,
and registers the core's analytic gradient through :func:`jax.custom_vjp`, so ``jax.grad`` never
differentiates through the loss formula.

Behaviour worth knowing:

* Configuration (``loss``, ``gamma``, ``reduction``, ``label_smoothing``, ``ignore_index``, ``axis``,
  ``axis_name``) is static Python data; arrays may be traced. No Python control flow depends on array values.
* ``axis_name``: inside ``shard_map``/``pmap`` (or ``vmap(..., axis_name=...)``) the ``mean``/``weighted_mean``
  denominator is ``lax.psum``-ed over that axis, so each device returns *its shard's share* of the whole
  batch's loss: ``lax.psum(loss, axis_name)`` is the whole batch's mean, and the gradient with respect to the
  local logits is exactly the whole-batch gradient's slice. With a batch sharded through ``jax.sharding``
  under plain ``jit`` no ``axis_name`` is needed: XLA partitions the global sum itself.
* Labels out of range cannot raise inside ``jit``. Here every label outside ``[0, C)`` that is not
  ``ignore_index`` (negative ones included: they are *not* wrapped around) gathers NaN, so its position's loss
  and gradient are NaN and a ``mean``/``sum`` becomes NaN: visible, never silently wrong. Eager calls (labels
  not traced) are validated by default and raise ``ValueError: labels: ...``; :func:`validate_labels` checks
  eagerly before a jitted step, and ``validate="checkify"`` emits :mod:`jax.experimental.checkify` checks
  for use under ``checkify.checkify``. Soft targets are used as given under ``jit``.
* Targets and weights are constants for differentiation (their cotangent is zero).
"""

from __future__ import annotations

import functools
from typing import Any

import array_api_compat
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import checkify

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
)
from ..primitives import Primitives
from ..weights import Normalize, class_balanced_weights, host_class_weights

__all__ = ["ClassBalancedLoss", "JaxPrimitives", "class_balanced_loss", "validate_labels"]

# The namespace, resolved once outside any compiled region (array-api-compat returns jax.numpy itself).
xp = array_api_compat.array_namespace(jnp.zeros(0))
_NP = array_api_compat.array_namespace(np.zeros(0))  # eager value checks run on host copies

_MEANS = ("mean", "weighted_mean")


class JaxPrimitives(Primitives):
    """The generic definitions with jax.nn's logsumexp/softplus, and gathers that never wrap or clamp: an index
    outside ``[0, C)`` gathers NaN."""

    fuses_elementwise = True  # everything runs under jit (XLA)

    def logsumexp(self, x: Any) -> Any:
        return jax.nn.logsumexp(x, axis=-1, keepdims=True)

    def softplus(self, x: Any) -> Any:
        return jax.nn.softplus(x)  # logaddexp(x, 0) = max(x, 0) + log1p(exp(-|x|))

    def take_label(self, x: Any, labels: Any) -> Any:
        picked = jnp.take_along_axis(x, labels[..., None], axis=-1, mode="fill", wrap_negative_indices=False)
        return picked[..., 0]

    def take_weights(self, weights: Any, labels: Any) -> Any:
        # .at[].get with the labels' sharding: under an explicit-sharding mesh a gather from the replicated
        # (C,) weights must be told that its output is sharded like the labels.
        sharding = jax.typeof(labels).sharding
        sharding = sharding if sharding.mesh.axis_names else None
        return weights.at[labels].get(mode="fill", wrap_negative_indices=False, out_sharding=sharding)


_OPS = JaxPrimitives(xp)


# ----------------------------------------------------------------------------------------------------------
# The traced path: the core's terms and reduction, with its analytic gradient as the VJP.
# ----------------------------------------------------------------------------------------------------------
def _reduced(z, labels, weights, opts: LossOptions, soft: bool, axis_name: Any, with_grad: bool):
    ops = _OPS
    terms = loss_terms(ops, z, labels, weights, opts, soft=soft, with_grad=with_grad)
    denominator = None
    if axis_name is not None and opts.reduction in _MEANS:
        denominator = lax.psum(jnp.sum(terms.norm), axis_name)
    return reduce_terms(xp, terms, opts.reduction, denominator)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _loss(z, labels, weights, opts, soft, axis_name):
    return _reduced(z, labels, weights, opts, soft, axis_name, with_grad=False)[0]


def _loss_fwd(z, labels, weights, opts, soft, axis_name):
    return _reduced(z, labels, weights, opts, soft, axis_name, with_grad=True)


def _loss_bwd(opts, soft, axis_name, grad, cotangent):
    scale = cotangent[..., None] if opts.reduction == "none" else cotangent
    return scale * grad, None, None


_loss.defvjp(_loss_fwd, _loss_bwd)


@functools.partial(jax.jit, static_argnames=("opts", "axis", "soft", "axis_name", "check"))
def _compiled(logits, labels, weights, opts: LossOptions, axis: int, soft: bool, axis_name: Any, check: bool):
    """Cast and move the class axis last (JAX differentiates these), then the core under the custom VJP."""
    dtype = compute_dtype(xp, logits.dtype)
    num_classes = logits.shape[axis]
    z = xp.astype(logits, dtype)
    if soft:
        labels = xp.astype(labels, dtype)
    if axis != logits.ndim - 1:
        z = jnp.moveaxis(z, axis, -1)
        if soft:
            labels = jnp.moveaxis(labels, axis, -1)
    if check:
        _checkify_labels(labels, num_classes, soft, opts.ignore_index)
    if weights is None and not soft:
        # Gather ones rather than skip the gather: an out-of-range label then gives NaN for every loss kind.
        weights = jnp.ones((num_classes,), dtype)
    else:
        weights = None if weights is None else xp.astype(weights, dtype)
    return _loss(z, lax.stop_gradient(labels), lax.stop_gradient(weights), opts, soft, axis_name)


def _checkify_labels(labels, num_classes: int, soft: bool, ignore_index: int | None) -> None:
    if soft:
        checkify.check(
            jnp.all(labels >= 0), "labels: soft targets must be finite probabilities >= 0 (found negative or NaN)"
        )
        return
    bad = (labels < 0) | (labels >= num_classes)
    if ignore_index is not None:
        bad = bad & (labels != ignore_index)
    first = jnp.reshape(labels, (-1,))[jnp.argmax(jnp.reshape(bad, (-1,)))]
    checkify.check(~jnp.any(bad), f"labels: class indices must be in [0, {num_classes}), got {{}}", first)


def _is_traced(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


# ----------------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------------
def validate_labels(
    labels: Any, num_classes: int, *, ignore_index: int | None = None, soft: bool | None = None, axis: int = -1
) -> None:
    """Eagerly check label values (outside ``jit``): class indices in ``[0, num_classes)`` (or
    ``ignore_index``), or soft targets that are probabilities summing to 1 along ``axis``. Raises
    ``ValueError`` naming ``labels``; a traced ``labels`` raises ``TypeError`` (use ``validate="checkify"``)."""
    if _is_traced(labels):
        raise TypeError(
            "labels: validate_labels reads label values and cannot run on traced arrays (inside jit/vmap/grad); "
            "call it before the jitted step, or pass validate='checkify' and wrap the step in checkify.checkify"
        )
    # On a host copy: inside a trace even operations on concrete arrays are staged, so checks run in NumPy.
    labels = np.asarray(labels)
    if soft is None:
        soft = bool(jnp.issubdtype(labels.dtype, jnp.floating))
    if soft:
        given_dtype = labels.dtype  # sets the tolerance of the sums (float16/bfloat16: 1e-2)
        labels = np.moveaxis(labels.astype(np.float64), axis, -1)
        check_label_values(_NP, labels, int(num_classes), True, ignore_index, given_dtype)
    else:
        check_label_values(_NP, labels, int(num_classes), False, ignore_index)


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
    axis_name: Any = None,
    validate: bool | str | None = None,
) -> jax.Array:
    """Class-balanced loss of ``logits`` (class axis ``axis``, default last) against ``labels``; see
    :func:`cbloss.class_balanced_loss` for every option. Pure: safe under ``jax.jit``, ``jax.grad``,
    ``jax.value_and_grad``, ``jax.vmap``, ``shard_map`` and ``pmap``; the gradient with respect to ``logits``
    is the core's analytic gradient (a ``jax.custom_vjp``).

    ``axis_name``: a mapped axis name (``shard_map``/``pmap``/``vmap``) over which the ``mean``/
    ``weighted_mean`` denominator is summed with ``lax.psum``; each device then returns its shard's share and
    ``lax.psum(loss, axis_name)`` is the whole batch's loss. ``validate``: ``None`` (default) checks label
    and weight values when they are concrete (eager) and skips the check when traced; ``True`` requires the
    check (``TypeError`` if traced); ``False`` never checks; ``"checkify"`` emits ``checkify`` checks (wrap the
    caller in :func:`jax.experimental.checkify.checkify`). Unchecked out-of-range labels give NaN (see the
    module docstring). float16/bfloat16 logits compute in float32 and the loss is float32; float64 needs
    ``jax_enable_x64``.
    """
    opts = LossOptions.make(loss, gamma, reduction, label_smoothing, ignore_index)
    return _evaluate(logits, labels, weights, opts, axis, axis_name, validate)


def _evaluate(logits, labels, weights, opts: LossOptions, axis: int, axis_name: Any, validate: Any) -> jax.Array:
    if validate not in (None, True, False, "checkify"):
        raise ValueError(f"validate: must be None, True, False or 'checkify', got {validate!r}")
    logits = logits if _is_traced(logits) else jnp.asarray(logits)
    labels = labels if _is_traced(labels) else jnp.asarray(labels)
    axis, soft = check_logits_and_labels(xp, logits, labels, axis)
    num_classes = logits.shape[axis]
    if validate is True and (_is_traced(labels) or _is_traced(weights)):
        raise TypeError(
            "validate=True needs concrete labels and weights, but they are traced (inside jit/vmap/grad): "
            "validate eagerly with validate_labels(...) before the step, or use validate='checkify'"
        )
    eager = validate is None or validate is True
    if eager and not _is_traced(labels):
        validate_labels(labels, num_classes, ignore_index=opts.ignore_index, soft=soft, axis=axis)
    if weights is not None:
        if eager and not _is_traced(weights):
            prepare_weights(_NP, np.asarray(weights, dtype=np.float64), num_classes, np.float64, None, True)
        weights = prepare_weights(xp, weights, num_classes, compute_dtype(xp, logits.dtype), None, False)
    return _compiled(logits, labels, weights, opts, axis, soft, axis_name, validate == "checkify")


@jax.tree_util.register_pytree_node_class
class ClassBalancedLoss:
    """An immutable class-balanced loss holding its (C,) weights as a ``jax.Array``; a pytree (the weights
    are its only leaf), so it can be passed to, closed over by, or returned from jitted functions.

    ``ClassBalancedLoss(samples_per_class, beta)`` computes the weights once in float64 on the host
    (:func:`cbloss.class_balanced_weights`) and stores them in JAX's default float dtype;
    ``ClassBalancedLoss.from_weights(w)`` takes given weights (or None: unweighted). Calling it with
    ``(logits, labels)`` is :func:`class_balanced_loss` with those weights.
    """

    __slots__ = ("__weakref__", "axis", "axis_name", "beta", "normalize", "options", "weights")

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
        axis_name: Any = None,
    ):
        weights = class_balanced_weights(samples_per_class, beta, normalize=normalize, zero_count=zero_count)
        options = LossOptions.make(loss, gamma, reduction, label_smoothing, ignore_index)
        self._set(jnp.asarray(weights), options, int(axis), axis_name, float(beta), normalize)

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
        axis_name: Any = None,
    ) -> ClassBalancedLoss:
        """A loss with given (C,) class weights (finite, >= 0), or ``None`` for an unweighted loss."""
        if weights is not None:
            weights = jnp.asarray(host_class_weights(weights))
        self = object.__new__(cls)
        options = LossOptions.make(loss, gamma, reduction, label_smoothing, ignore_index)
        self._set(weights, options, int(axis), axis_name, None, None)
        return self

    def _set(self, weights, options, axis, axis_name, beta, normalize) -> None:
        for name, value in zip(
            ("weights", "options", "axis", "axis_name", "beta", "normalize"),
            (weights, options, axis, axis_name, beta, normalize),
            strict=True,
        ):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"ClassBalancedLoss is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"ClassBalancedLoss is immutable; cannot delete {name!r}")

    # pytree protocol: the weights are the only leaf, everything else is static (hashable) aux data.
    def tree_flatten(self):
        return (self.weights,), (self.options, self.axis, self.axis_name, self.beta, self.normalize)

    @classmethod
    def tree_unflatten(cls, aux, children):
        self = object.__new__(cls)
        self._set(children[0], *aux)
        return self

    @property
    def num_classes(self) -> int | None:
        return None if self.weights is None else int(self.weights.shape[0])

    def __call__(self, logits: Any, labels: Any, *, validate: bool | str | None = None) -> jax.Array:
        return _evaluate(logits, labels, self.weights, self.options, self.axis, self.axis_name, validate)

    def __repr__(self) -> str:
        o = self.options
        return (
            f"ClassBalancedLoss(num_classes={self.num_classes}, beta={self.beta}, loss={o.loss!r}, "
            f"gamma={o.gamma}, normalize={self.normalize!r}, reduction={o.reduction!r}, axis={self.axis}, "
            f"axis_name={self.axis_name!r})"
        )
