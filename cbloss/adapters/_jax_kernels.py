"""JAX's kernels for the core's named pieces (docs/conventions.md §13): :class:`JaxPrimitives`, the core's
definitions with one exponential shared between softplus and the sigmoids, and gathers that never wrap or clamp;
class indices that JAX's narrower integers never wrap (:func:`narrowed_on_host`); the positions' layout one loss
needs (:func:`on_one_axis_of_positions`). :mod:`cbloss.adapters.jax` binds them; the formulas live in
:mod:`cbloss.losses`, once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from .. import validation
from .._namespace import real_to_numpy
from ..primitives import SharedExpPrimitives

__all__ = ["OPS", "JaxPrimitives", "index_dtype", "is_traced", "narrowed_on_host", "on_one_axis_of_positions"]


class JaxPrimitives(SharedExpPrimitives):
    """The core's definitions with one exponential shared by softplus and both sigmoids (everything here runs
    under XLA, which fuses the selects), jax.nn's ``logsumexp``, gathers that never wrap or clamp (an index
    outside ``[0, C)`` gathers NaN), and an exponential formed again where it is read, which keeps one array
    fewer alive at XLA's peak."""

    def logsumexp(self, x: Any) -> Any:
        return jax.nn.logsumexp(x, axis=-1)

    def rematerialize_exp_(self, fresh: Any, x: Any, shift: Any, top: Any) -> Any:
        # XLA keeps one buffer for each expensive value that more than one fusion reads; formed again here, fresh is
        # read only by the passes before this one. x + (-shift) is x - shift bitwise, written differently so that
        # the common-subexpression pass does not merge this exp with the one that formed fresh.
        again = jnp.exp(x + (-shift))
        return self.put_at_label_(again, top, jnp.ones_like(again[..., 0]))

    def take_label(self, x: Any, labels: Any) -> Any:
        index = _index(labels, x.shape[-1])[..., None]
        return jnp.take_along_axis(x, index, axis=-1, mode="fill", wrap_negative_indices=False)[..., 0]

    def take_weights(self, weights: Any, labels: Any) -> Any:
        # Under an explicit-sharding mesh a gather from the replicated (C,) weights must be told that its
        # output is sharded like the labels.
        sharding = jax.typeof(labels).sharding
        sharding = sharding if sharding.mesh.axis_names else None
        index = _index(labels, weights.shape[0])
        return weights.at[index].get(mode="fill", wrap_negative_indices=False, out_sharding=sharding)


def is_traced(x: Any) -> bool:
    """Whether ``x`` is a tracer (inside ``jit``, ``grad``, ``vmap``, ...): it has a shape but no values to read."""
    return isinstance(x, jax.core.Tracer)


def index_dtype() -> Any:
    """The engine's class-index dtype, which the labels' checks must read them in: int64, int32 without x64."""
    return jax.dtypes.canonicalize_dtype(jnp.int64)


def narrowed_on_host(labels: Any, ignore_index: int | None) -> Any:
    """Concrete integer labels wider than JAX's integers (int64 without x64), narrowed on the host without wrapping
    to its signed ones (:func:`cbloss.validation.narrow_class_indices`: a label beyond them is then never a class);
    any other labels as they are."""
    if isinstance(labels, jax.Array):
        return labels
    host = real_to_numpy(labels)
    if host.dtype.kind not in "iu" or jax.dtypes.canonicalize_dtype(host.dtype) == host.dtype:
        return labels
    return validation.narrow_class_indices(host, index_dtype(), ignore_index)


def _index(labels: Any, num_classes: int) -> Any:
    """The labels as gather indices, each one outside ``[0, C)`` replaced by C (filled): JAX's gathers take int64
    indices modulo 2**32, which would read ``2**32 + k`` as class k."""
    if labels.dtype.itemsize <= 4:
        return labels
    return jnp.where(validation.labels_out_of_range(jnp, labels, num_classes, None), num_classes, labels)


def on_one_axis_of_positions(
    loss: Callable[..., Any], z: Any, labels: Any, weights: Any, sample_weight: Any, soft: bool, per_position: bool
) -> Any:
    """``loss(z, labels, weights, sample_weight)`` with the positions of ``z`` (N, ..., C) on one axis, (P, C); a
    per-position result (``per_position``) in their shape again.

    For softmax_focal's dense evaluation: XLA feeds its class sums' matmuls a (P, C) copy of an (N, ..., C)
    operand, which its gradient pass then cannot share: it forms the slope again from what that was formed of, and
    so keeps those alive (one more (N, ..., C) buffer at the peak)."""
    positions, num_classes = z.shape[:-1], z.shape[-1]
    value = loss(  # -1: the number of positions may be symbolic (jax.export with a symbolic batch)
        z.reshape(-1, num_classes),
        labels.reshape(-1, num_classes) if soft else labels.reshape(-1),
        weights,
        None if sample_weight is None else sample_weight.reshape(-1),
    )
    return value.reshape(positions) if per_position else value


OPS = JaxPrimitives(jnp)
