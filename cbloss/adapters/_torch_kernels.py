"""PyTorch's kernels for the core's named pieces and for whole losses where a fused kernel computes exactly the
core's definition (docs/conventions.md §13): :class:`TorchPrimitives`, the softmax cross-entropy for CB softmax and
the binary cross-entropy for CB sigmoid on multi-hot targets. :mod:`cbloss.adapters.torch` binds them; the formulas
live in :mod:`cbloss.losses`, except the cross-entropy's composition of ``log_softmax`` and a gather for unchecked
labels (PyTorch's own definition, written out where its fused call would need an ignore value)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import array_api_compat.torch as xp
import numpy as np
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensor

from ..engine import multi_hot_weights
from ..options import LossOptions
from ..primitives import Primitives, SharedExpPrimitives
from ..reductions import hard_shares, reduction_factor, scaled_gradient, soft_shares
from ..targets import label_weights
from ..validation import compute_dtype

__all__ = [
    "DOUBLE_BACKWARD",
    "OPS",
    "TorchPrimitives",
    "binary_cross_entropy",
    "cast_weights",
    "class_dim_of",
    "compute_layout",
    "constant",
    "cross_entropy",
    "in_compute_dtype",
    "input_gradient",
    "ops_for",
    "traced",
]

# F.softplus returns x itself above `threshold`. log1p(exp(-x)) is below half an ulp of x once x > 37 in float64
# (x > 17 in float32), so 40 keeps every float64 digit; PyTorch's default, 20, loses up to 2.7e5 ulps in float64
# between 20 and 37 (checked against mpmath).
_SOFTPLUS_THRESHOLD = 40.0
# Elements per block of positions (TorchPrimitives.in_position_blocks). On the CPU 128 KiB of float32: small
# enough that an input of a few blocks is split (its peak is then about what weighted BCE's is), large enough that
# a block's kernel calls cost little beside its arithmetic, and a block's temporaries stay in a core's L2 cache;
# elsewhere each block is a kernel launch, so blocks only bound the memory of very large arrays.
_BLOCK = {"cpu": 1 << 15}
_DEVICE_BLOCK = 1 << 24


def _memory_layout(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(x, -1)``, or the contiguous ``(N, C, d1, ...)`` tensor whose class-last view ``x`` is, and dim 1: along it
    softmax, gather and scatter read neighbouring positions from neighbouring memory."""
    if x.ndim >= 3 and x.stride(-1) != 1:
        original = x.movedim(-1, 1)
        if original.is_contiguous():
            return original, 1
    return x, -1


_LIBRARY = torch.library.Library("cbloss", "DEF")
_LIBRARY.define("cast_weights(Tensor weights, ScalarType dtype) -> Tensor")
_LIBRARY.impl("cast_weights", lambda weights, dtype: weights.to(dtype, copy=True), "CompositeExplicitAutograd")
torch.library.register_fake("cbloss::cast_weights", lambda weights, dtype: torch.empty_like(weights, dtype=dtype))
_cast_weights = torch.ops.cbloss.cast_weights.default
_LIBRARY.define("take_weights(Tensor weights, Tensor labels) -> Tensor")
_LIBRARY.impl("take_weights", lambda weights, labels: _gather_weights(weights, labels), "CompositeExplicitAutograd")
torch.library.register_fake(
    "cbloss::take_weights", lambda weights, labels: weights.new_empty(labels.shape, dtype=weights.dtype)
)
_take_weights = torch.ops.cbloss.take_weights.default


def traced(x: torch.Tensor) -> bool:
    """Whether ``x`` is traced into a graph rather than computed, so that its values cannot be read: under Dynamo
    (``torch.compile``, a strict ``torch.export``), whose answer is fixed while it traces, or a fake tensor (what a
    non-strict ``torch.export`` runs this code on). Not ``torch.compiler.is_compiling()``: one thread's compile or
    export sets that for every thread, and an eager call in another would then skip its checks."""
    return torch.compiler.is_dynamo_compiling() or isinstance(x, FakeTensor)


DOUBLE_BACKWARD = "cbloss: double backward is not supported for this loss (its gradient is analytic, not traced)"


def input_gradient(
    grad: torch.Tensor, grad_output: torch.Tensor, reduction: str, class_dim: int, dtype: torch.dtype
) -> torch.Tensor:
    """The input's gradient from the core's (class dim last): back in the input's layout first (a view), so that
    the product runs along its memory, not across it; a new tensor, never ``grad`` (the caller may change what it
    receives in place), in the input's dtype."""
    if class_dim != grad.ndim - 1:
        grad = grad.movedim(-1, class_dim)
    if grad_output.dtype != grad.dtype:
        grad_output = grad_output.to(grad.dtype)
    scaled = scaled_gradient(xp, grad, grad_output, reduction, class_dim)
    return scaled if scaled.dtype == dtype else scaled.to(dtype)


def in_compute_dtype(input: torch.Tensor) -> torch.Tensor:
    """``input`` in its compute dtype (docs/conventions.md §9): itself when it is in it already, as a cast to the
    same dtype is still an operator call."""
    dtype = compute_dtype(xp, input.dtype)
    return input if input.dtype == dtype else input.to(dtype)


def class_dim_of(input: torch.Tensor) -> int:
    """The class dim of a PyTorch input, as ``F.cross_entropy`` has it: 1, or 0 for an unbatched ``(C,)`` one."""
    return 1 if input.ndim >= 2 else 0


def compute_layout(input: torch.Tensor, class_dim: int) -> torch.Tensor:
    """The core's layout of ``input``: the compute dtype, class dim last (a view); no call where either is already
    so."""
    z = in_compute_dtype(input)
    return z if class_dim == input.ndim - 1 else z.movedim(class_dim, -1)


def _gather_weights(weights: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if labels.ndim == 1:
        return torch.index_select(weights, 0, labels)
    return torch.index_select(weights, 0, labels.reshape(-1)).view(labels.shape)


def constant(x: Any, host_check: Callable[..., Any] | None = None, dtype: torch.dtype = torch.float32) -> Any:
    """A target or weights as a constant (docs/conventions.md §10): detached. Under ``torch.compile``, host
    weights (NumPy, sequences) are read and checked by ``host_check`` on the host (within the range of ``dtype``,
    the compute dtype), outside the graph: Dynamo cannot trace NumPy, and its graph break inside the adapter's
    ``try`` would run the whole loss eagerly."""
    if isinstance(x, torch.Tensor):
        return x.detach() if x.requires_grad else x
    if x is None or not torch.compiler.is_dynamo_compiling():
        return x
    return _from_host(host_check, x, dtype == torch.float64)


@torch.compiler.disable
def _from_host(host_check: Callable[..., Any], values: Any, float64: bool) -> torch.Tensor:
    return torch.from_numpy(host_check(values, dtype=np.float64 if float64 else np.float32))


def cast_weights(weights: Any, dtype: torch.dtype) -> Any:
    """The (C,) class weights in the compute ``dtype``, for a loss that reads them at every element (multi-hot or
    soft targets). Under ``torch.compile`` the cast is an opaque kernel that runs once into a (C,) buffer: as a
    plain cast the compiler inlines it into every loop that reads the weights and converts them again at each
    element (the module's weights are float64). Elsewhere the weights come back as they are."""
    if not (isinstance(weights, torch.Tensor) and traced(weights) and weights.dtype != dtype):
        return weights
    return _cast_weights(weights, dtype)


# Inside a compiled graph, which fuses the elementwise passes and merges the expressions both sides of a binary
# problem share (AOTAutograd's CSE), the core's one-exp forms beat the separate kernels (two more exponentials).
_SHARED_EXP = SharedExpPrimitives(xp)


_Results = TypeVar("_Results", bound=tuple[torch.Tensor, ...])
_Pair = tuple[torch.Tensor, "torch.Tensor | None"]  # a value and its gradient, or None


def _in_memory_order(piece: Callable[[torch.Tensor], _Results], x: torch.Tensor) -> _Results:
    """The elementwise ``piece`` of ``x`` evaluated in ``x``'s memory order: for the class-last view of a dense
    ``(N, C, d1, ...)`` tensor, on that tensor, with class-last views of the results handed back (the same values).
    Inductor lays out a buffer it keeps contiguous in the buffer's own shape; computed on the class-last view,
    these buffers were class-last, and the focal elements read from them were written through a transpose."""
    view, dim = _memory_layout(x)
    results = piece(view)
    return results if dim == -1 else cast(_Results, tuple(r.movedim(1, -1) for r in results))


class TorchPrimitives(Primitives):
    """PyTorch's kernels for the core's named pieces, each the generic definition along the last axis under
    the same contract: arguments are never written, results are new tensors (the pieces named with a trailing
    underscore, ``put_at_label_``, ``softplus_and_sigmoids_`` and ``lerp_``, write into the fresh tensor their
    caller hands over, as their contract allows)."""

    def logsumexp(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(x, dim=-1)

    def softmax_and_logsumexp(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        view, dim = _memory_layout(x)
        if dim == -1 and traced(x):
            # classes contiguous in memory: the compiler fuses the core's one-exp form into its two reductions
            return super().softmax_and_logsumexp(x)
        # The fused softmax kernel keeps its normaliser S to itself, but its largest entry is exp(0) / S, so
        # logsumexp = max(x) + log(S) = max(x) - log(max(p)) without a second exponential pass.
        p = torch.softmax(view, dim=dim)
        return (p if dim == -1 else p.movedim(dim, -1)), torch.amax(view, dim=dim) - torch.log(torch.amax(p, dim=dim))

    def softplus(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(x, 1.0, _SOFTPLUS_THRESHOLD)

    def softplus_and_sigmoids(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if traced(x):
            return _in_memory_order(_SHARED_EXP.softplus_and_sigmoids, x)
        # torch.sigmoid keeps the relative digits of a tiny sigmoid(+-x), as the generic exp(-softplus) does;
        # sigmoid(-x) is taken in place of -x, our own temporary (one allocation fewer).
        return self.softplus(x), torch.sigmoid(x), torch.neg(x).sigmoid_()

    def softplus_and_sigmoids_(self, fresh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if traced(fresh):
            return _in_memory_order(_SHARED_EXP.softplus_and_sigmoids, fresh)
        # The caller hands `fresh` over: sigmoid(-x) is taken in place of it once the other two have read it.
        softplus, sigmoid = self.softplus(fresh), torch.sigmoid(fresh)
        return softplus, sigmoid, fresh.neg_().sigmoid_()

    def softplus_and_sigmoids_of_negation(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if traced(x):
            return _in_memory_order(_SHARED_EXP.softplus_and_sigmoids_of_negation, x)
        return super().softplus_and_sigmoids_of_negation(x)

    def softplus_pair_and_sigmoids(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if traced(x):
            return _in_memory_order(_SHARED_EXP.softplus_pair_and_sigmoids, x)
        # Four kernels for both sides; sigmoid(-x) is taken in place of -x, our own temporary, once softplus(-x)
        # has read it.
        minus = torch.neg(x)
        softplus, softplus_minus = self.softplus(x), self.softplus(minus)
        return softplus, softplus_minus, torch.sigmoid(x), minus.sigmoid_()

    def lerp(self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        # x + w (y - x) for w < 1/2, y - (1 - w) (y - x) above: exact at w = 0 and w = 1
        return torch.lerp(x, y, weight)

    def lerp_(self, fresh: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        # The caller allocated `fresh` and hands it over: the result is written into it.
        return fresh.lerp_(y, weight)

    def in_position_blocks(
        self,
        evaluate: Callable[[torch.Tensor, torch.Tensor], _Pair],
        z: torch.Tensor,
        per_element: torch.Tensor,
        total: bool = False,
    ) -> _Pair:
        block = _BLOCK.get(z.device.type, _DEVICE_BLOCK)
        if traced(z) or z.ndim < 2 or z.numel() <= block:
            return evaluate(z, per_element)
        # A block of leading rows at a time (a row too large: one at a time, split further), each block's gradient
        # written into the one result as soon as it is formed, so that only a block's temporaries are ever alive.
        rows = 0
        if z[0].numel() <= block:
            blocks = -(-z.numel() // block)  # as many as the block size needs, of equal rows (the last no larger)
            rows = -(-len(z) // blocks)
        parts: list[Any] = [slice(i, i + rows) for i in range(0, len(z), rows)] if rows else list(range(len(z)))
        values, grad = [], None
        for part in parts:
            if rows:
                value, part_grad = evaluate(z[part], per_element[part])
            else:
                value, part_grad = self.in_position_blocks(evaluate, z[part], per_element[part], total)
            values.append(value)
            if part_grad is not None:
                grad = torch.empty_like(z) if grad is None else grad  # z's layout, a class-last view included
                grad[part] = part_grad
            del part_grad  # not alive while the next block is evaluated
        if total:
            return torch.sum(torch.stack(values)), grad
        return (torch.cat(values) if rows else torch.stack(values)), grad

    def softplus_and_sigmoid(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if traced(x):
            return _in_memory_order(_SHARED_EXP.softplus_and_sigmoid, x)
        return self.softplus(x), torch.sigmoid(x)

    def sign_split_sigmoid(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # The sides split on the sign bit (+0 positive, -0 not), which copysign reads too; the sigmoid and the
        # sign are applied in place of -|x|, our own temporary.
        negative = torch.signbit(x)
        step = torch.where(negative, x.new_zeros(()), x.new_ones(()))
        minus_magnitude = torch.abs(x).neg_()
        rest = self.softplus(minus_magnitude)
        signed = minus_magnitude.sigmoid_().copysign_(x).neg_()
        return step, rest, signed

    def class_sum(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim < 2 or x.stride(-1) == 1 or traced(x):
            return super().class_sum(x, weights)
        # A class-last view of class planes (a dense (N, C, d1, ...) tensor, or a block of one sample's): reduced
        # along the planes, one matrix-vector product per sample, where a product on the view would copy it
        # class-last first.
        view, dim = _memory_layout(x)
        if dim == 1:
            planes = view.flatten(2)
        else:
            planes = x.movedim(-1, 0)
            if not planes[0].is_contiguous():
                return super().class_sum(x, weights)
            planes = planes.reshape(planes.shape[0], -1)
        sums = torch.sum(planes, dim=-2) if weights is None else torch.matmul(weights, planes)
        return sums.view(x.shape[:-1])

    def class_total(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        if traced(x):  # one reduction of the products, in x's memory order, fused with x's pass
            return torch.sum(x if weights is None else x * weights)
        return super().class_total(x, weights)

    # gather and scatter reject a label outside [0, C), where the generic mask would skip it silently.
    def take_label(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        view, dim = _memory_layout(x)
        return torch.gather(view, dim, labels.unsqueeze(dim)).squeeze(dim)

    def put_at_label_(self, fresh: torch.Tensor, labels: torch.Tensor, values: Any) -> torch.Tensor:
        # The caller allocated `fresh` and hands it over: scatter into it rather than into a copy of it.
        view, dim = _memory_layout(fresh)
        view.scatter_(dim, labels.unsqueeze(dim), values.unsqueeze(dim))
        return fresh

    def take_weights(self, weights: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if labels.ndim >= 2 and traced(labels):
            # Positions over several dims (dense inputs, classes in dim 1): the compiled loops over the logits run
            # along the positions, where a gather inlined into them is a scalar loop per element. As an opaque
            # kernel it runs once into a buffer of the positions' weights, which those loops read as a vector.
            return _take_weights(weights, labels)
        return _gather_weights(weights, labels)


class _SelectAtLabel(TorchPrimitives):
    """:class:`TorchPrimitives` whose label writes (``put_at_label_``, the one the losses use), inside a compiled
    graph on the class-last view of a dense ``(N, C, d1, ...)`` tensor, are a select along its class dim 1 (the
    generic :meth:`Primitives.put_at_label`, in the tensor's memory order) instead of a scatter. A scatter is a
    mutation: Inductor writes every array it touches (the elements, ``exp(-|z|)``, the gradient) as a full buffer
    and reads it back in further loops. The select fuses, and the partitioner recomputes the gradient in the
    backward pass, from the logits, in one loop that writes nothing but the gradient. Elsewhere (eager, ``(N, C)``
    inputs) they are the scatter, except inside a class sum (``class_sum_with_label_``), which selects the label's
    entry in every compiled layout: on ``(N, C)`` the summed elements are then never written, while the gradient's
    scatter keeps it saved for the backward (a scatter is no operator the partitioner recomputes)."""

    def put_at_label_(self, fresh: torch.Tensor, labels: torch.Tensor, values: Any) -> torch.Tensor:
        if traced(fresh) and _memory_layout(fresh)[1] == 1:
            return _select_at_label(fresh, labels, values)
        return super().put_at_label_(fresh, labels, values)

    def class_sum_with_label_(self, fresh: torch.Tensor, labels: torch.Tensor, values: Any) -> torch.Tensor:
        if not traced(fresh):
            return super().class_sum_with_label_(fresh, labels, values)
        return torch.sum(_select_at_label(fresh, labels, values), dim=-1)


def _select_at_label(x: torch.Tensor, labels: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``put_at_label`` of ``x`` as a select in its memory order: on the tensor behind the class-last view of a dense
    tensor, along its class dim 1 (a mask built class-last would lay the result out class-last), or along the last
    dim."""
    view, dim = _memory_layout(x)
    classes = torch.arange(x.shape[-1], device=x.device)
    if dim == -1:
        return torch.where(labels.unsqueeze(-1) == classes, values.unsqueeze(-1), x)
    classes = classes.view((-1,) + (1,) * (view.ndim - 2))
    return torch.where(labels.unsqueeze(1) == classes, values.unsqueeze(1), view).movedim(1, -1)


OPS = TorchPrimitives(xp)
_SELECT_OPS = _SelectAtLabel(xp)


def ops_for(kind: str) -> TorchPrimitives:
    """The pieces for loss ``kind``. The focal loss keeps the scatter: its gradient's elementwise chain (two
    transcendentals, powers) costs more to recompute in the backward than the buffers the scatter writes."""
    return OPS if kind == "focal" else _SELECT_OPS


def cross_entropy(
    input, labels, w, opts: LossOptions, soft: bool, class_dim: int, sample_weight, global_sum, checked: bool
) -> torch.Tensor:
    """CB softmax on PyTorch's fused kernels, differentiated by autograd: per position they compute exactly the
    core's ``sum_c a_c (-log p_c)`` (docs/conventions.md §7 parity); the position weights and the reduction are
    the core's."""
    z = in_compute_dtype(input)
    eps, reduction = opts.label_smoothing, opts.reduction
    # F.cross_entropy takes an ignore value: ignore_index's own, or, when no label is to be ignored, PyTorch's
    # default on labels checked to lie in [0, C), which therefore never equal it (docs/conventions.md §6.4).
    ignore_index = -100 if opts.ignore_index is None or soft else opts.ignore_index
    unchecked = not soft and opts.ignore_index is None and not checked
    if soft:  # ignore_index has no effect on probabilities (docs/conventions.md §6.4)
        shares = soft_shares(xp, reduction, labels, w, sample_weight)
        labels = labels.movedim(-1, class_dim)
    elif reduction == "weighted_mean" or sample_weight is not None or unchecked:
        _, valid, _, label_weight = label_weights(OPS, labels, w, opts.ignore_index, sample_weight, z)
        shares = hard_shares(xp, reduction, label_weight, valid, z.dtype)
    else:  # "mean" counts positions: only the labels' shape and the ignored ones matter
        shares = hard_shares(
            xp, reduction, labels, None if opts.ignore_index is None else labels != ignore_index, z.dtype
        )
    factor = reduction_factor(xp, reduction, shares, global_sum, like=z)
    if unchecked:
        # log_softmax and gather, which reject every label outside [0, C): no ignore value on unchecked labels
        log_p = F.log_softmax(z, dim=class_dim)
        values = -log_p.gather(class_dim, labels.unsqueeze(class_dim)).squeeze(class_dim) * label_weight
        if eps:  # F.cross_entropy's smoothing: (1 - eps) times that, plus eps / C * sum_c w_c (-log p_c)
            per_class = log_p if w is None else log_p * w.reshape((-1,) + (1,) * (z.ndim - 1 - class_dim))
            smooth = torch.sum(per_class, dim=class_dim) * (-eps / z.shape[class_dim])
            values = (1.0 - eps) * values + (smooth if sample_weight is None else smooth * sample_weight)
    elif sample_weight is None and factor is not None:
        # the reduced loss in one call, the factor folded into the class weights (the loss is linear in them)
        weight = None if w is None else w * factor
        total = F.cross_entropy(
            z, labels, weight=weight, ignore_index=ignore_index, reduction="sum", label_smoothing=eps
        )
        return total if w is not None else total * factor
    else:
        values = F.cross_entropy(z, labels, weight=w, ignore_index=ignore_index, reduction="none", label_smoothing=eps)
        values = values if sample_weight is None else values * sample_weight
    return values if factor is None else torch.sum(values) * factor


def binary_cross_entropy(input, targets, w, opts: LossOptions, class_dim: int, sample_weight, global_sum):
    """CB sigmoid on multi-hot targets with PyTorch's fused binary cross-entropy, differentiated by autograd: per
    element it computes the core's ``(1 - t) softplus(z) + t softplus(-z)`` (docs/conventions.md §6.5), to within
    the cancellation its own formula has at confident elements (docs/torch.md);
    the weights, the smoothed targets and the reduction's factor are the core's. The kernel runs in the input's
    own layout (class dim ``class_dim``), the class weights shaped to broadcast along it."""
    z = in_compute_dtype(input)
    weighted = multi_hot_weights(xp, z.movedim(class_dim, -1), targets, w, opts, sample_weight, global_sum)
    targets, class_weights, position_weights = weighted
    targets = targets.movedim(-1, class_dim)
    if class_weights is not None:
        class_weights = class_weights.reshape((-1,) + (1,) * (z.ndim - 1 - class_dim))
    if position_weights is None and opts.reduction != "none":
        return F.binary_cross_entropy_with_logits(z, targets, weight=class_weights, reduction="sum")
    values = F.binary_cross_entropy_with_logits(z, targets, weight=class_weights, reduction="none").sum(class_dim)
    values = values if position_weights is None else values * position_weights
    return values if opts.reduction == "none" else torch.sum(values)
