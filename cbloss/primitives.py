"""Named numeric pieces that the Array-API standard lacks, each defined once here.

The loss engine (``cbloss.losses``) calls only these and standard functions. A backend may pass a subclass
of :class:`Primitives` that replaces a piece with the framework's own fused kernel computing *exactly the
same definition* (for example ``torch.log_softmax`` for :meth:`log_softmax`); the conformance suite checks
every backend against the oracle, so a substitute that drifts is caught. No loss formula lives here.

Everything works along the last axis; the engine moves the class axis there first.
"""

from __future__ import annotations

from typing import Any

import array_api_compat


class Primitives:
    """Generic Array-API implementations; ``xp`` is the namespace of the arrays they receive."""

    #: How the backend runs elementwise work, for the engine's choice between two exact forms of one loss. False:
    #: each operation is a pass over memory (NumPy, eager PyTorch), so a second evaluation on the P label values is
    #: cheaper than a (P, C) copy of the logits with the label's column negated. True: a compiler fuses elementwise
    #: passes and selects (XLA), so the negation is free inside the fused pass and a second evaluation is not.
    fuses_elementwise = False

    def __init__(self, xp: Any):
        self.xp = xp

    # -- log-space building blocks ---------------------------------------------------------------------
    def logsumexp(self, x: Any) -> Any:
        """``log(sum(exp(x), axis=-1, keepdims=True))``, shifted by the row maximum.

        Rows of all ``-inf`` give ``-inf``, a ``+inf`` entry gives ``+inf``, NaN propagates.
        """
        xp = self.xp
        m = xp.max(x, axis=-1, keepdims=True)
        m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
        return xp.log(xp.sum(xp.exp(x - m), axis=-1, keepdims=True)) + m

    def log_softmax(self, x: Any) -> Any:
        """``x - logsumexp(x)`` along the last axis."""
        return x - self.logsumexp(x)

    def softmax_and_logsumexp(self, x: Any) -> tuple[Any, Any]:
        """``(softmax(x), logsumexp(x))`` along the last axis: ``p = exp(x - M)`` for ``M = logsumexp(x)`` (a fresh
        temporary that callers update in place) and ``M`` without the class axis. Computed as
        ``e = exp(x - max)``, ``S = sum(e)``, ``p = e / S``, ``M = max + log(S)``."""
        xp = self.xp
        m = xp.max(x, axis=-1, keepdims=True)
        e = xp.exp(x - m)
        total = xp.sum(e, axis=-1, keepdims=True)
        e /= total
        return e, (m + xp.log(total))[..., 0]

    def softplus(self, x: Any) -> Any:
        """``log(1 + exp(x))`` as ``max(x, 0) + log1p(exp(-|x|))``: no overflow, full float64 digits."""
        xp = self.xp
        return self.positive_part(x) + xp.log1p(xp.exp(-xp.abs(x)))

    def positive_part(self, x: Any) -> Any:
        """``max(x, 0)`` elementwise (0 for NaN; a sum with NaN stays NaN)."""
        xp = self.xp
        return xp.where(x > 0, x, xp.zeros_like(x))

    def softplus_and_sigmoid(self, x: Any) -> tuple[Any, Any]:
        """``(softplus(x), sigmoid(x))``: ``sigmoid(x) = 1 - exp(-softplus(x))``, taken as
        ``-expm1(-softplus(x))`` (exact where it is tiny). Elementwise, any shape."""
        u = self.softplus(x)
        return u, -self.xp.expm1(-u)

    def softplus_and_sigmoids(self, x: Any, *, reuse: bool = False) -> tuple[Any, Any, Any]:
        """``(softplus(x), sigmoid(x), sigmoid(-x))``; ``sigmoid(-x) = exp(-softplus(x))`` keeps its relative
        digits where it is tiny. The third result is a fresh temporary the caller may update in place. With
        ``reuse=True`` the caller hands over ``x`` as a temporary and a result may reuse its memory."""
        u, q = self.softplus_and_sigmoid(x)
        return u, q, self.xp.exp(-u)

    def multiply_add(self, a: Any, b: Any, c: Any, scale: float) -> Any:
        """``a + scale * b * c`` elementwise; ``a`` and ``b`` are temporaries the result may reuse."""
        b *= c
        b *= scale
        b += a
        return b

    # -- class-axis indexing ------------------------------------------------------------------------------
    def take_label(self, x: Any, labels: Any) -> Any:
        """``x[..., labels]`` position by position: ``x`` is (..., C), ``labels`` (...) integer."""
        xp = self.xp
        picked = xp.take_along_axis(x, labels[..., None], axis=x.ndim - 1)
        return picked[..., 0]

    def label_mask(self, labels: Any, num_classes: int) -> Any:
        """Boolean (..., C): True at each position's label."""
        xp = self.xp
        classes = xp.arange(num_classes, dtype=labels.dtype, device=array_api_compat.device(labels))
        return labels[..., None] == classes

    def add_at_label(self, x: Any, labels: Any, values: Any) -> Any:
        """``x`` with ``values[...]`` (in ``x``'s dtype) added at ``x[..., labels[...]]``; may reuse ``x``'s memory."""
        xp = self.xp
        return xp.where(self.label_mask(labels, x.shape[-1]), x + values[..., None], x)

    def negate_at_label(self, x: Any, labels: Any, *, reuse: bool = False) -> Any:
        """``x`` with ``x[..., labels]`` negated, position by position: ``where(label_mask, -x, x)``. With
        ``reuse=True`` the caller hands over a temporary and the result may reuse its memory."""
        return self.xp.where(self.label_mask(labels, x.shape[-1]), -x, x)

    def put_at_label(self, x: Any, labels: Any, values: Any) -> Any:
        """``x`` with ``x[..., labels[...]]`` replaced by ``values[...]`` (an array shaped like ``labels`` in ``x``'s
        dtype, or a Python scalar for every position); may reuse ``x``'s memory."""
        xp = self.xp
        values = values if isinstance(values, (int, float)) else values[..., None]
        return xp.where(self.label_mask(labels, x.shape[-1]), values, x)

    def take_weights(self, weights: Any, labels: Any) -> Any:
        """``weights[labels]`` for a (C,) weight vector and integer labels of any shape."""
        xp = self.xp
        flat = xp.reshape(labels, (-1,))
        return xp.reshape(xp.take(weights, flat, axis=0), labels.shape)


class SharedExpPrimitives(Primitives):
    """The same definitions as :class:`Primitives` (full float64 digits, no overflow) with each transcendental
    function computed once and shared, for a compiler that fuses the elementwise passes (XLA): fewer
    ``exp``/``log``, more (fused, free) selects and multiplies. Without fusion each of those is a pass over
    memory; there the backend's fused kernels are faster.

    - The sigmoid pieces from one ``exp`` and one ``log1p`` per element: ``e = exp(-|x|)``,
      ``softplus(x) = max(x, 0) + log1p(e)``, ``sigmoid(x) = 1 / (1 + e)`` for ``x >= 0`` and ``e / (1 + e)``
      below, ``sigmoid(-x)`` the other one.
    """

    fuses_elementwise = True

    # The generic form: a compiler fuses its passes, where a backend's fused softmax kernel hides the normaliser.
    softmax_and_logsumexp = Primitives.softmax_and_logsumexp

    def _shared_exp(self, x: Any) -> tuple[Any, Any, Any, Any]:
        """``(softplus(x), r = 1 / (1 + e), e * r, x >= 0)`` for ``e = exp(-|x|)``."""
        xp = self.xp
        e = xp.exp(-xp.abs(x))
        u = self.positive_part(x) + xp.log1p(e)
        r = 1.0 / (1.0 + e)
        return u, r, e * r, x >= 0

    def softplus_and_sigmoid(self, x: Any) -> tuple[Any, Any]:
        xp = self.xp
        u, r, er, nonnegative = self._shared_exp(x)
        return u, xp.where(nonnegative, r, er)

    def softplus_and_sigmoids(self, x: Any, *, reuse: bool = False) -> tuple[Any, Any, Any]:
        xp = self.xp
        u, r, er, nonnegative = self._shared_exp(x)
        return u, xp.where(nonnegative, r, er), xp.where(nonnegative, er, r)
