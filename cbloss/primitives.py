"""Named numeric pieces that the Array-API standard lacks, each defined once here.

The losses (``cbloss.losses``) call only these and standard functions. Every piece is functional: it never
writes into its arguments and returns fresh arrays (or arrays the caller owns). The exceptions are named with a
trailing underscore (:meth:`Primitives.put_at_label_`, :meth:`Primitives.subtract_at_label_`,
:meth:`Primitives.class_sum_with_label_`, :meth:`Primitives.softplus_and_sigmoids_`, :meth:`Primitives.lerp_`,
:meth:`Primitives.rematerialize_exp_`): they may write into an array their caller has just allocated and hands
over, and their caller uses the results only. A backend may pass a subclass of :class:`Primitives` that replaces a
piece with the framework's own kernel computing *exactly the same definition* under the same contract (for
example ``torch.softmax`` in :meth:`softmax_and_logsumexp`); the conformance suite checks every backend against
the oracle, so a substitute that drifts is caught. No loss formula lives here.

Everything works along the last axis; the engine moves the class axis there first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import array_api_compat

__all__ = ["Primitives", "SharedExpPrimitives"]


class Primitives:
    """Generic Array-API implementations; ``xp`` is the namespace of the arrays they receive."""

    def __init__(self, xp: Any):
        self.xp = xp

    # -- log-space building blocks ---------------------------------------------------------------------
    def logsumexp(self, x: Any) -> Any:
        """``log(sum(exp(x), axis=-1))``, shifted by the row maximum; the class axis is dropped.

        Rows of all ``-inf`` give ``-inf``, a ``+inf`` entry gives ``+inf``, NaN propagates.
        """
        xp = self.xp
        m = xp.max(x, axis=-1, keepdims=True)
        m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
        return (xp.log(xp.sum(xp.exp(x - m), axis=-1, keepdims=True)) + m)[..., 0]

    def softmax_and_logsumexp(self, x: Any) -> tuple[Any, Any]:
        """``(softmax(x), logsumexp(x))`` along the last axis, the second without the class axis, from one
        exponential pass: ``e = exp(x - max)``, ``S = sum(e)``, ``p = e / S``, ``logsumexp = max + log(S)``."""
        xp = self.xp
        # reduced without keepdims: a compiler keeps the per-position arrays 1-D (XLA's CPU code ran an (N, 1)
        # one as an elementwise call per row)
        m = xp.max(x, axis=-1)
        e = xp.exp(x - m[..., None])
        total = xp.sum(e, axis=-1)
        return e / total[..., None], m + xp.log(total)

    def softplus(self, x: Any) -> Any:
        """``log(1 + exp(x))`` as ``max(x, 0) + log1p(exp(-|x|))``: no overflow, full float64 digits. Zero takes
        the side ``x >= 0``, where JAX's slope of ``|x|`` (+1) puts it: derivatives of this form (JAX's second
        order) are then right at 0. The same in every form here that branches on the sign of ``x``."""
        xp = self.xp
        return xp.where(x >= 0, x, xp.zeros_like(x)) + xp.log1p(xp.exp(-xp.abs(x)))

    def softplus_and_sigmoids(self, x: Any) -> tuple[Any, Any, Any]:
        """``(softplus(x), sigmoid(x), sigmoid(-x))``, each with its relative digits where it is tiny:
        ``sigmoid(x) = -expm1(-softplus(x))`` and ``sigmoid(-x) = exp(-softplus(x))``. Elementwise."""
        xp = self.xp
        u = self.softplus(x)
        return u, -xp.expm1(-u), xp.exp(-u)

    def softplus_and_sigmoids_(self, fresh: Any) -> tuple[Any, Any, Any]:
        """:meth:`softplus_and_sigmoids` of an array ``fresh`` that the caller has just allocated itself and hands
        over: a backend with in-place kernels may compute a result into it (saving one array); here (every
        namespace without them, and every override of the functional form) it is that form. Either way the
        caller reads only the results, never ``fresh`` again.

        Example:
            >>> import numpy as np
            >>> from cbloss.primitives import Primitives
            >>> u, q, r = Primitives(np).softplus_and_sigmoids_(np.array([0.0, 2.0]))
            >>> [f"{v:.4f}" for v in (*u, *q, *r)]
            ['0.6931', '2.1269', '0.5000', '0.8808', '0.5000', '0.1192']
        """
        return self.softplus_and_sigmoids(fresh)

    def softplus_and_sigmoids_of_negation(self, x: Any) -> tuple[Any, Any, Any]:
        """``(softplus(-x), sigmoid(-x), sigmoid(x))``: :meth:`softplus_and_sigmoids` at ``-x``, for a loss that
        evaluates both sides of a binary problem. Here ``-x`` is formed and handed over
        (:meth:`softplus_and_sigmoids_`); a backend that shares transcendentals computes it from the same
        ``exp(-|x|)`` as :meth:`softplus_and_sigmoids` of ``x``, so that a compiler merges the two.

        Example:
            >>> import numpy as np
            >>> from cbloss.primitives import Primitives
            >>> u, q, r = Primitives(np).softplus_and_sigmoids_of_negation(np.array([2.0]))
            >>> [f"{v:.4f}" for v in (*u, *q, *r)]
            ['0.1269', '0.1192', '0.8808']
        """
        return self.softplus_and_sigmoids_(-x)

    def softplus_pair_and_sigmoids(self, x: Any) -> tuple[Any, Any, Any, Any]:
        """``(softplus(x), softplus(-x), sigmoid(x), sigmoid(-x))``: the pieces of both sides of a binary problem,
        for a loss that evaluates both at every element. Each sigmoid is the accurate one of its two forms,
        ``-expm1(-softplus)`` of its own side; a backend with sigmoid kernels shares them between the sides (four
        transcendental passes, not six). Elementwise, four new arrays.

        Example:
            >>> import numpy as np
            >>> from cbloss.primitives import Primitives
            >>> pieces = Primitives(np).softplus_pair_and_sigmoids(np.array([2.0]))
            >>> [f"{v[0]:.4f}" for v in pieces]
            ['2.1269', '0.1269', '0.8808', '0.1192']
        """
        u, q, _ = self.softplus_and_sigmoids(x)
        u_minus, r, _ = self.softplus_and_sigmoids_of_negation(x)
        return u, u_minus, q, r

    def rematerialize_exp_(self, fresh: Any, x: Any, shift: Any, top: Any) -> Any:
        """``fresh``, an array the caller has formed itself as ``exp(x - shift)`` with exactly 1 at each position's
        class ``top`` (``shift`` (P..., 1), ``top`` (P...) integer) and hands over to read it once more, after other
        passes. Here it is returned as it is; a compiler backend may form it again from ``x`` where it is read, so
        that it is not held in memory across those passes. The caller reads only the result, never ``fresh`` again.

        Example:
            >>> import numpy as np
            >>> from cbloss.primitives import Primitives
            >>> x, shift, top = np.array([[0.0, 1.0]]), np.array([[1.0]]), np.array([1])
            >>> Primitives(np).rematerialize_exp_(np.array([[0.25, 1.0]]), x, shift, top).tolist()
            [[0.25, 1.0]]
        """
        return fresh

    def lerp(self, x: Any, y: Any, weight: Any) -> Any:
        """``(1 - weight) * x + weight * y`` elementwise, a new array: exactly ``x`` at weight 0 and ``y`` at weight
        1 (finite ``x`` and ``y``), and within a few ulps of the larger term otherwise."""
        return (1.0 - weight) * x + weight * y

    def lerp_(self, fresh: Any, y: Any, weight: Any) -> Any:
        """:meth:`lerp` for an array ``fresh`` that the caller has just allocated itself and hands over: a backend
        with an in-place kernel writes the result into it; here it is the functional form. Either way the caller
        reads only the result, never ``fresh`` again.

        Example:
            >>> import numpy as np
            >>> from cbloss.primitives import Primitives
            >>> Primitives(np).lerp_(np.array([1.0, 2.0]), np.array([3.0, 4.0]), np.array([0.0, 0.25])).tolist()
            [1.0, 2.5]
        """
        return self.lerp(fresh, y, weight)

    def in_position_blocks(
        self, evaluate: Callable[[Any, Any], tuple[Any, Any]], z: Any, per_element: Any, total: bool = False
    ) -> Any:
        """``evaluate(z, per_element)``, which maps (P..., C) logits and an array of their shape (the targets) to
        ``(value, gradient)``: per-position values (P...), or with ``total`` their 0-d sum, and a (P..., C) gradient
        or None, each position's from its own entries alone. A backend may evaluate it a block of positions at a
        time into one result (the blocks' totals added), so that the temporaries ``evaluate`` forms are alive for a
        block only; here it is one evaluation.

        Example:
            >>> import numpy as np
            >>> from cbloss.primitives import Primitives
            >>> z, t = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[0.0, 1.0], [1.0, 0.0]])
            >>> value, gradient = Primitives(np).in_position_blocks(lambda z, t: (np.sum(z * t, axis=-1), t), z, t)
            >>> value.tolist()
            [2.0, 3.0]
        """
        return evaluate(z, per_element)

    def softplus_and_sigmoid(self, x: Any) -> tuple[Any, Any]:
        """``(softplus(x), sigmoid(x))``: the first two of :meth:`softplus_and_sigmoids`, for a caller that does
        not need ``sigmoid(-x)`` (the sigmoid loss). A backend whose kernels are separate passes overrides it to
        skip the third; here it is read from the three, so that every override of those is used as it is."""
        u, q, _ = self.softplus_and_sigmoids(x)
        return u, q

    def sign_split_sigmoid(self, x: Any) -> tuple[Any, Any, Any]:
        """``(h, softplus(x) - max(x, 0), sigmoid(x) - h)`` with the step ``h`` 1 on the positive side of ``x``
        and 0 on the other, in ``x``'s dtype: ``log1p(exp(-|x|))`` and ``-+sigmoid(-|x|)``, one transcendental
        pass whose parts keep their relative digits for every finite ``x`` (``sigmoid(x) - 1`` computed as such
        loses all of them for ``x >> 0``). Zero falls on the positive side, as in :meth:`softplus`. Elementwise.

        Example:
            >>> import numpy as np
            >>> from cbloss.primitives import Primitives
            >>> h, rest, signed = Primitives(np).sign_split_sigmoid(np.array([-40.0, 40.0]))
            >>> h.tolist(), [f"{v:.3e}" for v in signed]
            ([0.0, 1.0], ['4.248e-18', '-4.248e-18'])
        """
        xp = self.xp
        positive = x >= 0
        rest, small = self.softplus_and_sigmoid(-xp.abs(x))
        return xp.astype(positive, x.dtype), rest, xp.where(positive, -small, small)

    def class_sum(self, x: Any, weights: Any | None = None) -> Any:
        """``sum_c weights_c x[..., c]`` per position for ``x`` (..., C) and ``weights`` (C,) (None: all ones); the
        class axis is dropped."""
        xp = self.xp
        return xp.sum(x, axis=-1) if weights is None else xp.matmul(x, weights)

    def class_total(self, x: Any, weights: Any | None = None) -> Any:
        """``sum_p sum_c weights_c x[p, c]``, 0-d: the class sums (:meth:`class_sum`) added over the positions, for a
        loss whose positions are all reduced alike. A compiler backend may form it as one reduction of the products,
        in memory order."""
        return self.xp.sum(self.class_sum(x, weights))

    # -- class-axis indexing ------------------------------------------------------------------------------
    def take_label(self, x: Any, labels: Any) -> Any:
        """``x[..., labels]`` position by position: ``x`` is (..., C), ``labels`` (...) integer."""
        xp = self.xp
        picked = xp.take_along_axis(x, labels[..., None], axis=x.ndim - 1)
        return picked[..., 0]

    def label_mask(self, labels: Any, num_classes: int) -> Any:
        """Boolean (..., C): True at each position's label. The classes are counted in the default index dtype,
        so that a narrow label dtype (int8, uint8, ...) cannot wrap around."""
        xp = self.xp
        classes = xp.arange(num_classes, device=array_api_compat.device(labels))
        return xp.astype(labels, classes.dtype)[..., None] == classes

    def put_at_label(self, x: Any, labels: Any, values: Any) -> Any:
        """A new array: ``x`` with ``x[..., labels[...]]`` replaced by ``values[...]`` (shaped like ``labels``, in
        ``x``'s dtype)."""
        return self.xp.where(self.label_mask(labels, x.shape[-1]), values[..., None], x)

    def put_at_label_(self, fresh: Any, labels: Any, values: Any) -> Any:
        """:meth:`put_at_label` for an array ``fresh`` that the caller has just allocated itself and hands over:
        a backend with an in-place scatter writes ``values`` into it and returns it, saving a copy of the whole
        array; here (every namespace without one: array_api_strict, JAX's immutable arrays) the result is a new
        array. Either way the caller reads only the returned array, never ``fresh`` again.

        Example:
            >>> import numpy as np
            >>> from cbloss.primitives import Primitives
            >>> Primitives(np).put_at_label_(np.zeros((2, 3)), np.array([2, 0]), np.array([5.0, 7.0])).tolist()
            [[0.0, 0.0, 5.0], [7.0, 0.0, 0.0]]
        """
        return self.put_at_label(fresh, labels, values)

    def class_sum_with_label_(self, fresh: Any, labels: Any, values: Any) -> Any:
        """Per position, the class sum of ``fresh`` with its label's entry replaced by ``values``
        (:meth:`put_at_label_`), for an array ``fresh`` that the caller has just allocated itself and hands over; the
        class axis is dropped. A compiler backend may select the label's entry inside the sum, so that the array with
        it is never written. The caller reads only the result, never ``fresh`` again.

        Example:
            >>> import numpy as np
            >>> from cbloss.primitives import Primitives
            >>> Primitives(np).class_sum_with_label_(np.ones((2, 3)), np.array([2, 0]), np.array([5.0, 7.0])).tolist()
            [7.0, 9.0]
        """
        return self.xp.sum(self.put_at_label_(fresh, labels, values), axis=-1)

    def subtract_at_label_(self, fresh: Any, labels: Any, values: Any) -> Any:
        """``fresh`` with ``values[...]`` subtracted from ``fresh[..., labels[...]]``, for an array ``fresh`` that the
        caller has just allocated itself and hands over (:meth:`put_at_label_` of the label's entry less
        ``values``). The caller reads only the returned array, never ``fresh`` again.

        Example:
            >>> import numpy as np
            >>> from cbloss.primitives import Primitives
            >>> Primitives(np).subtract_at_label_(np.ones((2, 3)), np.array([2, 0]), np.array([5.0, 7.0])).tolist()
            [[1.0, 1.0, -4.0], [-6.0, 1.0, 1.0]]
        """
        return self.put_at_label_(fresh, labels, self.take_label(fresh, labels) - values)

    def take_weights(self, weights: Any, labels: Any) -> Any:
        """``weights[labels]`` for a (C,) weight vector and integer labels of any shape."""
        xp = self.xp
        flat = xp.reshape(labels, (-1,))
        return xp.reshape(xp.take(weights, flat, axis=0), labels.shape)


class SharedExpPrimitives(Primitives):
    """The same definitions as :class:`Primitives` with each transcendental function computed once and
    shared, for a compiler that fuses elementwise passes (XLA): fewer ``exp``/``log``, more (fused, free)
    selects and divisions, and a label's entry changed by a select rather than a gather and a scatter.
    ``e = exp(-|x|)``, ``softplus(x) = max(x, 0) + log1p(e)``, ``sigmoid(x) = 1 / (1 + e)`` for ``x >= 0`` and
    ``e / (1 + e)`` below, ``sigmoid(-x)`` the other one."""

    def softplus_and_sigmoids(self, x: Any) -> tuple[Any, Any, Any]:
        xp = self.xp
        log1p_e, big, small, nonnegative = self._shared(x)
        u = xp.where(x >= 0, x, xp.zeros_like(x)) + log1p_e
        return u, xp.where(nonnegative, big, small), xp.where(nonnegative, small, big)

    def softplus_and_sigmoids_of_negation(self, x: Any) -> tuple[Any, Any, Any]:
        # the same expressions of x as softplus_and_sigmoids(x): a compiler's common-subexpression pass shares them
        xp = self.xp
        log1p_e, big, small, nonnegative = self._shared(x)
        u = xp.where(x < 0, -x, xp.zeros_like(x)) + log1p_e
        return u, xp.where(nonnegative, small, big), xp.where(nonnegative, big, small)

    def softplus_pair_and_sigmoids(self, x: Any) -> tuple[Any, Any, Any, Any]:
        # the expressions of softplus_and_sigmoids(x) and of its negation, from one exp and one log1p
        xp = self.xp
        log1p_e, big, small, nonnegative = self._shared(x)
        zero = xp.zeros_like(x)
        u = xp.where(x >= 0, x, zero) + log1p_e
        u_minus = xp.where(x < 0, -x, zero) + log1p_e
        return u, u_minus, xp.where(nonnegative, big, small), xp.where(nonnegative, small, big)

    def subtract_at_label_(self, fresh: Any, labels: Any, values: Any) -> Any:
        # One select on fresh, not a gather from it and a write back: XLA reads fresh's expression in one fusion,
        # not two, so it neither stores what that expression is formed from nor runs a scatter.
        xp = self.xp
        return xp.where(self.label_mask(labels, fresh.shape[-1]), fresh - values[..., None], fresh)

    def _shared(self, x: Any) -> tuple[Any, Any, Any, Any]:
        """``(log1p(e), 1 / (1 + e), e / (1 + e), x >= 0)`` with ``e = exp(-|x|)``: ``sigmoid(|x|)`` and
        ``sigmoid(-|x|)``, each with its relative digits."""
        xp = self.xp
        e = xp.exp(-xp.abs(x))
        big = 1.0 / (1.0 + e)
        return xp.log1p(e), big, e * big, x >= 0
