"""PyTorch adapter: :class:`ClassBalancedLoss` (a ``torch.nn.Module``) and :func:`class_balanced_loss`.

The class dimension is 1, like ``torch.nn.functional.cross_entropy``: ``input`` is ``(N, C)`` or
``(N, C, d1, ..., dk)`` (or an unbatched ``(C,)`` with a 0-d target); ``target`` holds integer class indices
shaped like ``input`` without dim 1, or probabilities shaped like ``input`` (mixup/cutmix).

What this module does, and nothing more (the formulas live in :mod:`cbloss.losses`, once):

- converts: the class dim is moved last (a view), float16/bfloat16 are computed in float32 (the loss is
  returned in float32, the gradient in the input's dtype), the weights are cast to the compute dtype on the
  input's device;
- validates eagerly (labels in range, soft targets summing to one). Reading the labels synchronises a GPU
  stream; ``validate=False`` turns these checks off, and they are skipped automatically under
  ``torch.compile`` and on the ``meta`` device. On the CPU, class indices without label smoothing (and with
  it, for softmax) are range-checked by the kernels themselves (``F.cross_entropy``, the gather at the labels
  that each loss starts with), whose error is turned into the core's ``ValueError``: no separate pass;
- ``loss="softmax"`` (and ``"softmax_focal"`` with ``gamma=0``, the same loss) runs on PyTorch's fused softmax
  cross-entropy, ``F.cross_entropy`` with the class weights, whose value and gradient are exactly the core's CB
  softmax (SPEC sections 2 and 6; the conformance suite checks both against the oracle); the core's reduction
  factor is folded into the weights (:func:`cbloss.losses.constant_reduction_factor`) or the core reduces the
  per-position values (:func:`cbloss.losses.position_norms`, :func:`cbloss.losses.reduce_terms`). A Python
  ``autograd.Function`` and the generic engine's small tensor ops would cost more than the whole kernel at
  (1024, 100). Second derivatives (``create_graph=True``) work for this loss;
- for the other losses, registers the core's analytic gradient through :class:`torch.autograd.Function`: the
  forward pass computes the loss *and* its gradient (:func:`cbloss.losses.loss_terms`,
  :func:`cbloss.losses.reduce_terms`), saves the gradient and the backward pass only scales it by
  ``grad_output``. Double backward (``create_graph=True``, Hessian-vector products, MAML) is not supported
  there and raises a ``RuntimeError``;
- substitutes PyTorch's fused kernels for the named primitives that compute exactly the core's definition
  (:class:`TorchPrimitives`);
- data parallel: ``global_normalizer=True`` all-reduces the mean's denominator over the process group, so
  that DistributedDataParallel's gradient averaging reproduces single-process training on the concatenated
  batch (uneven batches, ``ignore_index`` and ``"weighted_mean"`` included).
"""

from __future__ import annotations

import functools
import types
from typing import Any

import array_api_compat.torch as _compat_xp
import numpy as np
import torch
import torch.nn.functional as F

from ..losses import (
    LossName,
    LossOptions,
    Reduction,
    Terms,
    check_label_values,
    check_logits_and_labels,
    compute_dtype,
    constant_reduction_factor,
    loss_terms,
    position_norms,
    prepare_weights,
    reduce_terms,
)
from ..module import ClassBalancedLoss as _CoreLoss
from ..primitives import Primitives
from ..weights import Normalize

__all__ = ["ClassBalancedLoss", "TorchPrimitives", "class_balanced_loss"]

# F.softplus returns x itself above `threshold`. log1p(exp(-x)) is below half an ulp of x once x > 37 in
# float64 (x > 17 in float32), so 40 keeps every float64 digit; PyTorch's default, 20, loses up to 2.7e5 ulps
# in float64 between 20 and 37 (measured against mpmath).
_SOFTPLUS_THRESHOLD = 40.0

_DOUBLE_BACKWARD = (
    "cbloss: double backward (create_graph=True) through class_balanced_loss is not supported: its gradient is "
    "the analytic first derivative, registered with torch.autograd.Function, and has no derivative itself. "
    "Compute second-order terms with another loss, or call backward() without create_graph."
)


def _class_dim_layout(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(x, -1)``, or the tensor whose class-last view ``x`` is, with its class dim, when that tensor is
    contiguous: ``(N, C, d1, ...)`` (dim 1) behind the adapter's view of a dense input, or ``(C, N)`` (dim 0)
    behind :func:`_along_classes`'s transposed result. PyTorch's softmax kernels along an outer
    dim of a contiguous tensor vectorise over the positions, and gather/scatter read neighbouring positions from
    neighbouring memory; along a strided last dim they copy first."""
    if x.ndim >= 2 and x.stride(-1) != 1:
        dim = 1 if x.ndim > 2 else 0
        original = x.movedim(-1, dim)
        if original.is_contiguous():
            return original, dim
    return x, -1


# PyTorch's CPU (log_)softmax along a contiguous last dim is slow for short rows whose length is not a multiple of
# the vector width (measured, AVX-512, float32: 621 us at (4096, 10) against 27 us along dim 0 of the
# transposed (10, 4096), 73 us with the transposing copy; 53 us at (2560, 16)). Below this many classes a
# (N, C) input is transposed once and everything else follows that layout (see _class_dim_layout).
_TRANSPOSE_BELOW_CLASSES = 16
_TRANSPOSE_FROM_ROWS = 256


def _along_classes(kernel: Any, x: torch.Tensor) -> torch.Tensor:
    """``kernel(x, dim=...)`` (a softmax-like kernel) along the last dim of ``x``, run in the layout where it is
    fast: a short-row ``(N, C)`` CPU input is transposed once (see ``_TRANSPOSE_BELOW_CLASSES``), the class-last
    view of a dense input runs along dim 1 of the original (see :func:`_class_dim_layout`)."""
    if (
        x.ndim == 2
        and x.device.type == "cpu"
        and not _is_compiling()  # a shape-dependent branch would guard and recompile; inductor fuses anyway
        and x.shape[1] < _TRANSPOSE_BELOW_CLASSES
        and x.shape[1] % 8
        and x.shape[0] >= _TRANSPOSE_FROM_ROWS
        and x.is_contiguous()
    ):
        return kernel(x.t().contiguous(), dim=0).t()
    x, dim = _class_dim_layout(x)
    out = kernel(x, dim=dim)
    return out if dim == -1 else out.movedim(dim, -1)


class TorchPrimitives(Primitives):
    """PyTorch's fused kernels for the core's named pieces, each computing exactly the generic definition
    along the last axis (checked by the conformance suite against the float64 oracle)."""

    def softmax_and_logsumexp(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The fused softmax kernel keeps its normaliser to itself; max(p) = 1 / sum exp(x - max x) >= 1 / C gives
        # it back without a second exponential pass: logsumexp(x) = max(x) - log(max(p)).
        p = _along_classes(torch.softmax, x)
        return p, torch.amax(x, dim=-1) - torch.log(torch.amax(p, dim=-1))

    def softplus(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(x, 1.0, _SOFTPLUS_THRESHOLD)  # positional: keyword parsing costs ~1 us a call

    def softplus_and_sigmoid(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.softplus(x), torch.sigmoid(x)

    def softplus_and_sigmoids(
        self, x: torch.Tensor, *, reuse: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # sigmoid(-x) by the sigmoid kernel, not exp(-softplus(x)): the same value with its relative digits, and
        # PyTorch's CPU sigmoid costs half its exp (measured: 0.42 against 0.83 ns an element). A temporary x is
        # negated and passed through the sigmoid in place: two (P, C) allocations fewer (~14% of these three
        # kernels' time on a dense (4, 19, 128, 128) input).
        u, q = self.softplus(x), torch.sigmoid(x)
        return u, q, (x.neg_() if reuse else torch.neg(x)).sigmoid_()

    def multiply_add(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, scale: float) -> torch.Tensor:
        return a.addcmul_(b, c, value=scale)  # one pass instead of three

    # Indexing along the class dim: on the class-last view of a dense (N, C, d...) tensor, gather/scatter run
    # along dim 1 of the original layout, where neighbouring positions are neighbours in memory.
    def negate_at_label(self, x: torch.Tensor, labels: torch.Tensor, *, reuse: bool = False) -> torch.Tensor:
        out = x if reuse else x.clone()
        view, dim = _class_dim_layout(out)
        index = labels.unsqueeze(dim)
        view.scatter_(dim, index, torch.gather(view, dim, index).neg_())
        return out

    def put_at_label(self, x: torch.Tensor, labels: torch.Tensor, values: Any) -> torch.Tensor:
        # In place. A scalar is expanded to a tensor source: scatter_ with a scalar value is a slower kernel (measured
        # on the CPU, float32: 30 against 9 us at (4096, 10), 310 against 165 us on a dense (4, 19, 128, 128)).
        view, dim = _class_dim_layout(x)
        index = labels.unsqueeze(dim)
        if isinstance(values, (int, float)):
            source = torch.full((), values, dtype=x.dtype, device=x.device).expand(index.shape)
        else:
            source = values.unsqueeze(dim)
        view.scatter_(dim, index, source)
        return x

    def take_label(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        view, dim = _class_dim_layout(x)
        return torch.gather(view, dim, labels.unsqueeze(dim)).squeeze(dim)

    def take_weights(self, weights: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # index_select: half of torch.take's time from 4096 labels up (3.3 against 6.8 us; 40 against 90 us for a
        # (4, 128, 128) target), a quarter of advanced indexing's
        if labels.ndim == 1:
            return torch.index_select(weights, 0, labels)
        return torch.index_select(weights, 0, labels.reshape(-1)).view(labels.shape)


def _namespace() -> Any:
    """``array_api_compat.torch`` with the wrappers the engine calls on every step (``where``, ``ones``,
    ``ones_like``, ``zeros_like``, ``sum``) replaced by the torch functions they wrap: with the arguments the
    engine passes (tensors of one dtype, Python scalars, ``axis``/``keepdims``) they need no adaptation, and the
    wrappers' checks cost ~5-10 us a call, a quarter of the per-call overhead at small batches. A module object,
    so that torch.compile treats it like the compat namespace itself."""
    namespace = types.ModuleType("cbloss.adapters._torch_namespace", _compat_xp.__doc__)
    namespace.__dict__.update({k: v for k, v in vars(_compat_xp).items() if not k.startswith("__")})
    namespace.where = torch.where
    namespace.ones = torch.ones
    namespace.ones_like = torch.ones_like
    namespace.zeros_like = torch.zeros_like
    namespace.sum = torch.sum
    return namespace


_xp = _namespace()
_OPS = TorchPrimitives(_xp)


@functools.lru_cache(maxsize=256)
def _options(loss, gamma, reduction, label_smoothing, ignore_index) -> LossOptions:
    return LossOptions.make(loss, gamma, reduction, label_smoothing, ignore_index)


def _is_compiling() -> bool:
    return torch.compiler.is_compiling()


def _cast(input: torch.Tensor, target: torch.Tensor, soft: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, target): the logits in the compute dtype (``input`` itself when no cast is needed), soft targets
    alike, class indices as int64 (what gather/scatter and F.cross_entropy index with)."""
    dtype = compute_dtype(_xp, input.dtype)
    z = input if input.dtype == dtype else input.to(dtype)
    wanted = dtype if soft else torch.int64
    return z, (target if target.dtype == wanted else target.to(wanted))


def _to_compute(input: torch.Tensor, target: torch.Tensor, soft: bool, class_dim: int):
    """:func:`_cast`, with the class dim moved last (a view) in the logits and soft targets: the core's layout."""
    z, labels = _cast(input, target, soft)
    last = input.ndim - 1
    if class_dim != last:
        z = z.movedim(class_dim, last)
        if soft:
            labels = labels.movedim(class_dim, last)
    return z, labels


def _denominator(norm: torch.Tensor, opts: LossOptions, global_normalizer: bool, group: Any):
    """The means' denominator: the sum of the local shares ``norm``, or, with ``global_normalizer``, the
    shares summed over the process group and divided by its size: DDP averages the replicas' gradients, so
    dividing each replica's sum by ``global / world_size`` makes that average the gradient of the concatenated
    batch. None for the other reductions."""
    if opts.reduction not in ("mean", "weighted_mean"):
        return None
    total = _xp.sum(norm)
    if not global_normalizer:
        return total
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return total
    dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
    return total / dist.get_world_size(group)


# F.cross_entropy is PyTorch's fused softmax cross-entropy (log_softmax and nll_loss, with their fused backward
# kernels). Per position it computes exactly the core's CB softmax value, w_y * -log softmax(z)_y for class
# indices, sum_c t_c w_c (-log p_c) for probabilities, with the target smoothed to (1 - eps) t + eps / C (SPEC
# section 2; the conformance suite checks it against the oracle), and its backward is the same analytic gradient
# A p - a. SPEC section 6 lets such a fused kernel stand in for the core's generic version: a Python
# autograd.Function and the generic engine's small tensor ops cost 40-100 us a call, more than the whole
# F.cross_entropy at (1024, 100) on a CPU. The reduction stays the core's: its factor is folded into the class
# weights when the shapes fix it (constant_reduction_factor), else the core reduces the per-position values.
# torch's kernel needs an ignore value: without ignore_index, the smallest int64, which no dataset uses (a label
# of -100, PyTorch's default ignore value, must not be silently dropped; it is out of range like any other).
_NO_IGNORE_INDEX = -(2**63)


def _uniform_weight(input: torch.Tensor, value: float, dtype: torch.dtype) -> torch.Tensor:
    """``value`` for every class of ``input`` (class dim 1, or 0 unbatched): unweighted, with a factor folded in."""
    return torch.full((input.shape[1 if input.ndim > 1 else 0],), value, dtype=dtype, device=input.device)


def _fused_softmax(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    opts: LossOptions,
    soft: bool,
    class_dim: int,
    factor: float | None,
    global_normalizer: bool,
    group: Any,
) -> torch.Tensor:
    """CB softmax through F.cross_entropy (torch autograd differentiates it). ``factor``: the core's
    :func:`~cbloss.losses.constant_reduction_factor`, already folded into ``weight``; None when the core
    reduces the per-position values."""
    z, target = _cast(input, target, soft)
    ignore_index = _NO_IGNORE_INDEX if opts.ignore_index is None else opts.ignore_index
    smoothing = opts.label_smoothing
    if factor is not None:
        return F.cross_entropy(
            z, target, weight=weight, reduction="sum", ignore_index=ignore_index, label_smoothing=smoothing
        )
    values = F.cross_entropy(
        z, target, weight=weight, reduction="none", ignore_index=ignore_index, label_smoothing=smoothing
    )
    if opts.reduction == "none":
        return values
    labels = target.movedim(class_dim, -1) if soft and class_dim != target.ndim - 1 else target
    norm = position_norms(_OPS, labels, weight, opts, soft=soft, dtype=z.dtype)
    denominator = _denominator(norm, opts, global_normalizer, group)
    return reduce_terms(_xp, Terms(values, None, norm), opts.reduction, denominator)[0]


class _ClassBalancedFunction(torch.autograd.Function):
    """Forward: the loss and its analytic gradient from the core, already reduced; backward: the saved
    gradient times ``grad_output``. Only ``input`` gets a gradient (targets and weights are constants)."""

    @staticmethod
    def forward(ctx, input, labels, weight, config):
        """``config``: ``(opts, soft, class_dim, folded, global_normalizer, group)``, one argument (each argument
        of ``apply`` costs a few microseconds). ``folded``: the core's :func:`~cbloss.losses.constant_reduction_factor`
        is already folded into ``weight``, so the reduced loss is the sum of the per-position values; otherwise
        the reduction depends on the data and the core reduces with tensor ops."""
        opts, soft, class_dim, folded, global_normalizer, group = config
        z, labels = _to_compute(input, labels, soft, class_dim)
        if folded:
            terms = loss_terms(_OPS, z, labels, weight, opts, soft=soft, with_grad=True, with_norm=False)
            loss = _xp.sum(terms.value)
        else:
            denominator = None

            def reduction_factor(norm):
                # The reductions are linear in the gradient: reducing a unit gradient gives the factor (1, or
                # 1 / denominator, 0 for a zero denominator) that the core folds into the per-position
                # coefficients.
                nonlocal denominator
                denominator = _denominator(norm, opts, global_normalizer, group)
                return reduce_terms(_xp, Terms(norm, 1.0, norm), opts.reduction, denominator)[1]

            terms = loss_terms(_OPS, z, labels, weight, opts, soft=soft, with_grad=True, grad_scale=reduction_factor)
            loss, _ = reduce_terms(_xp, Terms(terms.value, None, terms.norm), opts.reduction, denominator)
        ctx.save_for_backward(terms.grad)
        ctx.class_dim = class_dim
        ctx.input_dtype = input.dtype
        ctx.per_position = opts.reduction == "none"
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        if torch.is_grad_enabled():
            raise RuntimeError(_DOUBLE_BACKWARD)
        (grad,) = ctx.saved_tensors
        if ctx.per_position:
            grad = grad * grad_output.unsqueeze(-1).to(grad.dtype)
        elif not _is_one(grad_output):
            grad = grad * grad_output.to(grad.dtype)
        last = grad.ndim - 1
        if ctx.class_dim != last:
            grad = grad.movedim(last, ctx.class_dim)
        if grad.dtype != ctx.input_dtype:
            grad = grad.to(ctx.input_dtype)
        return grad, None, None, None


def _is_one(grad_output: torch.Tensor) -> bool:
    """Whether the incoming gradient is the 1.0 that ``loss.backward()`` seeds, checked only where reading it is
    free (a CPU scalar, eager): then the saved gradient is returned as it is, without a multiplication pass.
    (Autograd hands a tensor that is still referenced elsewhere to a leaf's ``.grad`` as a copy.)"""
    return grad_output.is_cpu and grad_output.numel() == 1 and not _is_compiling() and grad_output.item() == 1.0


def _check_target_values(target, num_classes: int, soft: bool, ignore_index, class_dim: int) -> None:
    """Eager label checks (one device sync). Class indices all in range pass with a single ``aminmax``; any
    other case (ignore_index present, an error, probability targets) goes through the core's checks, which
    also write the message."""
    if not soft and target.numel():
        low, high = torch.aminmax(target)
        if low.item() >= 0 and high.item() < num_classes:
            return
    labels = target.movedim(class_dim, -1) if soft and class_dim != target.ndim - 1 else target
    try:
        check_label_values(_xp, labels, num_classes, soft, ignore_index, target.dtype)
    except ValueError as error:
        raise ValueError(str(error).replace("labels:", "target:")) from None


def _given_weight(weight: Any, validate: bool) -> Any:
    """The functional form's ``weight`` as a ``weight_for(input, factor)`` of :func:`_evaluate`: checked and
    cast to ``input``'s compute dtype and device at each call, times ``factor``."""

    def weight_for(input: torch.Tensor, factor: float, *, eager: bool) -> torch.Tensor | None:
        class_dim = 1 if input.ndim >= 2 else 0
        dtype = compute_dtype(_xp, input.dtype)
        w = prepare_weights(_xp, weight, input.shape[class_dim], dtype, input.device, validate and eager)
        if factor == 1.0:
            return w
        return _uniform_weight(input, factor, dtype) if w is None else w * factor

    return weight_for


def _evaluate(
    input: torch.Tensor,
    target: torch.Tensor,
    weight_for: Any,
    opts: LossOptions,
    *,
    validate: bool,
    global_normalizer: bool,
    process_group: Any,
) -> torch.Tensor:
    """``weight_for(input, factor, eager=...)``: the ``(C,)`` class weights in ``input``'s compute dtype on its
    device, times ``factor`` (a reduction factor folded into them), or None when unweighted and ``factor`` is 1."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"input: must be a torch.Tensor, got {type(input).__name__}")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target: must be a torch.Tensor, got {type(target).__name__}")
    if global_normalizer and opts.reduction not in ("mean", "weighted_mean"):
        raise ValueError(
            f"global_normalizer: applies to reduction='mean' or 'weighted_mean', got reduction={opts.reduction!r}"
        )
    class_dim = 1 if input.ndim >= 2 else 0
    try:
        _, soft = check_logits_and_labels(_xp, input, target, class_dim)
    except (TypeError, ValueError) as error:
        # The core names its arguments logits/labels; PyTorch users pass input/target.
        message = str(error).replace("logits", "input").replace("labels:", "target:")
        raise type(error)(message) from None
    num_classes = input.shape[class_dim]
    device_type = input.device.type
    eager = device_type != "meta" and not _is_compiling()
    kind = opts.kind
    factor = None
    if not global_normalizer:
        num_positions = target.numel() // num_classes if soft else target.numel()
        factor = constant_reduction_factor(opts, num_positions, soft=soft)
    # A reduction factor that the shapes fix is folded into the class weights (the loss is linear in them): the
    # reduced loss is then the plain sum of the per-position values, for F.cross_entropy and the core alike.
    w = weight_for(input, 1.0 if factor is None else factor, eager=eager)
    if w is not None and w.shape[0] != num_classes:
        raise ValueError(f"weights: expected {num_classes} class weights, got shape {tuple(w.shape)}")
    # On the CPU the kernels check class indices themselves before they compute anything (F.cross_entropy's
    # nll_loss, and the gather every hard-label path of the core starts with; label smoothing's one-hot would
    # not): those paths skip the separate pass over the labels and turn the kernel's error into the core's.
    kernel_checks_labels = not soft and device_type == "cpu" and (kind == "softmax" or not opts.label_smoothing)
    check = validate and eager
    if check and not kernel_checks_labels:
        _check_target_values(target, num_classes, soft, opts.ignore_index, class_dim)
    try:
        if kind == "softmax":
            return _fused_softmax(input, target, w, opts, soft, class_dim, factor, global_normalizer, process_group)
        if torch.is_grad_enabled() and input.requires_grad:
            config = (opts, soft, class_dim, factor is not None, global_normalizer, process_group)
            return _ClassBalancedFunction.apply(input, target, w, config)
        # No gradient wanted (evaluation, torch.no_grad): the value alone, without the (N, C) gradient.
        z, labels = _to_compute(input, target, soft, class_dim)
        terms = loss_terms(_OPS, z, labels, w, opts, soft=soft, with_grad=False, with_norm=factor is None)
        if factor is not None:
            return _xp.sum(terms.value)
        denominator = _denominator(terms.norm, opts, global_normalizer, process_group)
        return reduce_terms(_xp, terms, opts.reduction, denominator)[0]
    except (IndexError, RuntimeError):
        if check and kernel_checks_labels:
            _check_target_values(target, num_classes, soft, opts.ignore_index, class_dim)
        raise


def class_balanced_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: Any = None,
    *,
    loss: LossName = "softmax",
    gamma: float | None = None,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    validate: bool = True,
    global_normalizer: bool = False,
    process_group: Any = None,
) -> torch.Tensor:
    """Class-balanced loss of ``input`` (logits, class dim 1) against ``target``, like ``F.cross_entropy``.

    ``input``: ``(N, C)``, ``(N, C, d1, ..., dk)`` or unbatched ``(C,)``, any floating dtype.
    ``target``: integer class indices (``input``'s shape without dim 1; a 0-d tensor for ``(C,)``) or class
    probabilities (``input``'s shape). ``weight``: the ``(C,)`` class weights (a tensor, array or sequence;
    for example :func:`cbloss.class_balanced_weights`), or None for unweighted; it is cast to the compute
    dtype on ``input``'s device.

    ``loss``: ``"softmax"``, ``"sigmoid"``, ``"focal"`` (the paper's sigmoid focal loss) or
    ``"softmax_focal"``; ``gamma``: the focal exponent (default 2.0 for the focal losses).
    ``reduction``: ``"none"``, ``"sum"``, ``"mean"`` (over counted positions) or ``"weighted_mean"`` (over
    the counted positions' weights; this is ``F.cross_entropy(weight=...)``'s mean). ``label_smoothing``,
    ``ignore_index`` (class-index targets only; ``None`` by default, PyTorch's is -100) as in
    ``F.cross_entropy``.

    ``validate=False`` skips the eager label checks (labels in ``[0, C)`` or ``ignore_index``; probability
    targets >= 0 and summing to 1), which read the data and therefore synchronise with a GPU. They are
    skipped under ``torch.compile`` and on the ``meta`` device anyway; unchecked out-of-range labels raise an
    index error on CPU and a device-side assert on CUDA.

    ``global_normalizer=True`` (``"mean"``/``"weighted_mean"``, under an initialised ``torch.distributed``)
    divides by the denominator all-reduced over ``process_group`` and divided by its size: the returned loss
    is then this replica's share, such that the average over replicas is the loss of the concatenated batch
    and DistributedDataParallel's averaged gradient is that batch's gradient.

    float16/bfloat16 inputs (also under ``torch.autocast``) are computed in float32 and the loss is float32;
    the gradient has ``input``'s dtype. ``loss="softmax"`` runs on ``F.cross_entropy`` (second derivatives work);
    the other losses' gradient is the core's analytic gradient, and double backward raises for them.
    """
    opts = _options(loss, gamma, reduction, label_smoothing, ignore_index)
    return _evaluate(
        input,
        target,
        _given_weight(weight, validate),
        opts,
        validate=validate,
        global_normalizer=global_normalizer,
        process_group=process_group,
    )


class ClassBalancedLoss(torch.nn.Module):
    """Class-balanced loss as a module: a drop-in for ``nn.CrossEntropyLoss(weight=...)``.

    ``ClassBalancedLoss(samples_per_class, beta)`` computes the weights once, in float64 on the host, with
    :func:`cbloss.class_balanced_weights` (``normalize``, ``zero_count``); ``ClassBalancedLoss.from_weights(w)``
    takes precomputed ``(C,)`` weights (or None: unweighted). The weights are the float64 buffer ``weight``:
    they follow ``.to(device)``, are saved in ``state_dict`` and restored by ``load_state_dict``; a dtype
    cast of the module (``.half()``, ``.to(torch.bfloat16)``) leaves them in float64 (they are cast to the
    compute dtype at each call). ``forward(input, target)`` is :func:`class_balanced_loss` with these weights
    and options.
    """

    weight: torch.Tensor | None

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
        validate: bool = True,
        global_normalizer: bool = False,
        process_group: Any = None,
    ):
        super().__init__()
        core = _CoreLoss(
            samples_per_class,
            beta,
            loss=loss,
            gamma=gamma,
            normalize=normalize,
            reduction=reduction,
            label_smoothing=label_smoothing,
            ignore_index=ignore_index,
            zero_count=zero_count,
        )
        self._setup(core, validate, global_normalizer, process_group)

    @classmethod
    def from_weights(
        cls,
        weight: Any,
        *,
        loss: LossName = "softmax",
        gamma: float | None = None,
        reduction: Reduction = "mean",
        label_smoothing: float = 0.0,
        ignore_index: int | None = None,
        validate: bool = True,
        global_normalizer: bool = False,
        process_group: Any = None,
    ) -> ClassBalancedLoss:
        """A loss with the given ``(C,)`` class weights (finite, >= 0), or None for an unweighted loss."""
        if isinstance(weight, torch.Tensor):
            weight = weight.detach().to("cpu", torch.float64).numpy()
        core = _CoreLoss.from_weights(
            weight,
            loss=loss,
            gamma=gamma,
            reduction=reduction,
            label_smoothing=label_smoothing,
            ignore_index=ignore_index,
        )
        self = cls.__new__(cls)
        torch.nn.Module.__init__(self)
        self._setup(core, validate, global_normalizer, process_group)
        return self

    def _setup(self, core: _CoreLoss, validate: bool, global_normalizer: bool, process_group: Any) -> None:
        weight = None if core.weights is None else torch.from_numpy(np.array(core.weights, dtype=np.float64))
        self.register_buffer("weight", weight)
        self.options = core.options
        self.beta = core.beta
        self.normalize = core.normalize
        self.validate = bool(validate)
        self.global_normalizer = bool(global_normalizer)
        self.process_group = process_group
        o = core.options
        # softmax with a reduction factor that the shapes fix: with int64 targets on the CPU, forward is one
        # F.cross_entropy call.
        self._kernel_only = (
            o.kind == "softmax" and o.ignore_index is None and o.reduction in ("mean", "sum") and not global_normalizer
        )
        if self.global_normalizer and core.options.reduction not in ("mean", "weighted_mean"):
            raise ValueError(
                "global_normalizer: applies to reduction='mean' or 'weighted_mean', "
                f"got reduction={core.options.reduction!r}"
            )

    def _apply(self, fn, *args, **kwargs):
        # Keep the weights in float64 through module-wide dtype casts (model.half() must not round 0.9999 to 1);
        # device moves apply.
        weight = self.weight
        result = super()._apply(fn, *args, **kwargs)
        if weight is not None and self.weight is not None and self.weight.dtype != torch.float64:
            self.weight = weight.to(device=self.weight.device)
        return result

    @property
    def num_classes(self) -> int | None:
        return None if self.weight is None else int(self.weight.shape[0])

    def _compute_weight(self, input: torch.Tensor, factor: float = 1.0, *, eager: bool = True) -> torch.Tensor | None:
        """The weights in ``input``'s compute dtype on its device, times ``factor`` (a reduction's factor folded
        into them; with no weights, ``factor`` for every class when it is not 1), cached between calls: the cache
        follows the buffer (a new tensor, an in-place change), the device and compute dtype of ``input`` and the
        factor (a new batch size under ``"mean"``)."""
        weight = self._buffers["weight"]  # not self.weight: Module.__getattr__ is slow, and this runs every call
        dtype = compute_dtype(_xp, input.dtype)
        if weight is None and factor == 1.0:
            return None
        if not eager:  # compiling (no Python-side cache in a graph) or on the meta device
            if weight is None:
                return _uniform_weight(input, factor, dtype)
            weight = weight.to(device=input.device, dtype=dtype)
            return weight if factor == 1.0 else weight * factor
        key = (None if weight is None else (id(weight), weight._version, weight.device), dtype, input.device, factor)
        cache = self.__dict__.setdefault("_weight_cache", {})
        # The entry holds the buffer itself, so that its id is not reused by another tensor while cached.
        entry = cache.get(key)
        if entry is not None:
            return entry[1]
        if weight is None:
            cached = _uniform_weight(input, factor, dtype)
        else:
            cached = weight.to(device=input.device, dtype=torch.float64)
            cached = (cached if factor == 1.0 else cached * factor).to(dtype)
        if len(cache) >= 8:  # a few batch sizes (the last batch of an epoch is smaller), not one per size forever
            cache.clear()
        cache[key] = (weight, cached)
        return cached

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # The common configuration is F.cross_entropy alone: call it straight away (the glue below costs ~5% of the
        # whole call at (1024, 100)); its own checks reject what the core's would, and then the full path runs
        # and raises the core's error.
        if (
            self._kernel_only
            and isinstance(input, torch.Tensor)
            and isinstance(target, torch.Tensor)
            and target.dtype is torch.int64
            and (input.dtype is torch.float32 or input.dtype is torch.float64)
            and input.device.type == "cpu"
            and not _is_compiling()
        ):
            factor = constant_reduction_factor(self.options, target.numel(), soft=False)
            weight = self._compute_weight(input, factor)
            class_dim = 1 if input.ndim > 1 else 0
            try:
                return _fused_softmax(input, target, weight, self.options, False, class_dim, factor, False, None)
            except (RuntimeError, IndexError, ValueError):
                pass  # the full path below raises the core's error for the same input
        return _evaluate(
            input,
            target,
            self._compute_weight,
            self.options,
            validate=self.validate,
            global_normalizer=self.global_normalizer,
            process_group=self.process_group,
        )

    def extra_repr(self) -> str:
        o = self.options
        text = f"num_classes={self.num_classes}, beta={self.beta}, loss={o.loss!r}"
        if o.loss in ("focal", "softmax_focal"):
            text += f", gamma={o.gamma}"
        text += f", normalize={self.normalize!r}, reduction={o.reduction!r}"
        if o.label_smoothing:
            text += f", label_smoothing={o.label_smoothing}"
        if o.ignore_index is not None:
            text += f", ignore_index={o.ignore_index}"
        if self.global_normalizer:
            text += ", global_normalizer=True"
        return text
