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
  ``torch.compile`` and on the ``meta`` device;
- registers the core's analytic gradient through :class:`torch.autograd.Function`: the forward pass computes
  the loss *and* its gradient (:func:`cbloss.losses.loss_terms`, :func:`cbloss.losses.reduce_terms`), saves
  the gradient and the backward pass only scales it by ``grad_output``. Double backward
  (``create_graph=True``, Hessian-vector products, MAML) is not supported and raises a ``RuntimeError``;
- substitutes PyTorch's fused kernels for the named primitives that compute exactly the core's definition
  (:class:`TorchPrimitives`);
- data parallel: ``global_normalizer=True`` all-reduces the mean's denominator over the process group, so
  that DistributedDataParallel's gradient averaging reproduces single-process training on the concatenated
  batch (uneven batches, ``ignore_index`` and ``"weighted_mean"`` included).
"""

from __future__ import annotations

import functools
from typing import Any

import array_api_compat.torch as _xp
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
    loss_terms,
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


class TorchPrimitives(Primitives):
    """PyTorch's fused kernels for the core's named pieces, each computing exactly the generic definition
    along the last axis (checked by the conformance suite against the float64 oracle)."""

    def logsumexp(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(x, dim=-1, keepdim=True)

    def log_softmax(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(x, dim=-1)

    def softplus(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(x, beta=1.0, threshold=_SOFTPLUS_THRESHOLD)

    def take_label(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.gather(x, -1, labels.unsqueeze(-1)).squeeze(-1)

    def add_at_label(self, x: torch.Tensor, labels: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        # In place: the engine hands over a temporary it no longer reads (the docstring's "may reuse").
        return x.scatter_add_(-1, labels.unsqueeze(-1), values.unsqueeze(-1).to(x.dtype))

    def take_weights(self, weights: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return weights[labels]


_OPS = TorchPrimitives(_xp)


@functools.lru_cache(maxsize=256)
def _options(loss, gamma, reduction, label_smoothing, ignore_index) -> LossOptions:
    return LossOptions.make(loss, gamma, reduction, label_smoothing, ignore_index)


def _is_compiling() -> bool:
    return torch.compiler.is_compiling()


def _to_compute(input: torch.Tensor, target: torch.Tensor, soft: bool, class_dim: int):
    """(z, labels): the logits in the compute dtype with the class dim last (a view when no cast is needed);
    soft targets alike; class indices as int64 (what gather/scatter index with)."""
    dtype = compute_dtype(_xp, input.dtype)
    z = input if input.dtype == dtype else input.to(dtype)
    last = input.ndim - 1
    if class_dim != last:
        z = z.movedim(class_dim, last)
    if soft:
        labels = target if target.dtype == dtype else target.to(dtype)
        if class_dim != last:
            labels = labels.movedim(class_dim, last)
    else:
        labels = target if target.dtype == torch.int64 else target.to(torch.int64)
    return z, labels


def _denominator(terms: Terms, opts: LossOptions, global_normalizer: bool, group: Any):
    """None (``reduce_terms`` sums the local shares), or, with ``global_normalizer``, the shares summed over
    the process group and divided by its size: DDP averages the replicas' gradients, so dividing each
    replica's sum by ``global / world_size`` makes that average the gradient of the concatenated batch."""
    if not global_normalizer or opts.reduction not in ("mean", "weighted_mean"):
        return None
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None
    total = _xp.sum(terms.norm)
    dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
    return total / dist.get_world_size(group)


class _ClassBalancedFunction(torch.autograd.Function):
    """Forward: the loss and its analytic gradient from the core; backward: the saved gradient times
    ``grad_output``. Only ``input`` gets a gradient (targets and weights are constants)."""

    @staticmethod
    def forward(ctx, input, labels, weight, opts, soft, class_dim, global_normalizer, group):
        z, labels = _to_compute(input, labels, soft, class_dim)
        terms = loss_terms(_OPS, z, labels, weight, opts, soft=soft, with_grad=True)
        denominator = _denominator(terms, opts, global_normalizer, group)
        # The reductions are linear in the gradient: reducing a unit gradient gives the factor (1, or
        # 1 / denominator) that the backward pass folds into grad_output, so no scaled (N, C) copy is made here.
        loss, scale = reduce_terms(_xp, Terms(terms.value, 1.0, terms.norm), opts.reduction, denominator)
        if isinstance(scale, torch.Tensor):
            ctx.save_for_backward(terms.grad, scale)
        else:
            ctx.save_for_backward(terms.grad)
        ctx.class_dim = class_dim
        ctx.input_dtype = input.dtype
        ctx.per_position = opts.reduction == "none"
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        if torch.is_grad_enabled():
            raise RuntimeError(_DOUBLE_BACKWARD)
        saved = ctx.saved_tensors
        grad = saved[0]
        factor = grad_output.unsqueeze(-1) if ctx.per_position else grad_output
        if len(saved) > 1:
            factor = factor * saved[1]
        grad = grad * factor.to(grad.dtype)
        last = grad.ndim - 1
        if ctx.class_dim != last:
            grad = grad.movedim(last, ctx.class_dim)
        if grad.dtype != ctx.input_dtype:
            grad = grad.to(ctx.input_dtype)
        return grad, None, None, None, None, None, None, None


def _evaluate(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: Any,
    opts: LossOptions,
    *,
    validate: bool,
    validate_weight: bool,
    global_normalizer: bool,
    process_group: Any,
) -> torch.Tensor:
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
    dtype = compute_dtype(_xp, input.dtype)
    eager = not _is_compiling() and input.device.type != "meta"
    w = prepare_weights(_xp, weight, num_classes, dtype, input.device, validate and validate_weight and eager)
    if validate and eager:
        labels = target.movedim(class_dim, -1) if soft and class_dim != input.ndim - 1 else target
        try:
            check_label_values(_xp, labels, num_classes, soft, opts.ignore_index, target.dtype)
        except ValueError as error:
            raise ValueError(str(error).replace("labels:", "target:")) from None
    if torch.is_grad_enabled() and input.requires_grad:
        return _ClassBalancedFunction.apply(input, target, w, opts, soft, class_dim, global_normalizer, process_group)
    # No gradient wanted (evaluation, torch.no_grad): the value alone, without the (N, C) gradient.
    z, labels = _to_compute(input, target, soft, class_dim)
    terms = loss_terms(_OPS, z, labels, w, opts, soft=soft, with_grad=False)
    denominator = _denominator(terms, opts, global_normalizer, process_group)
    return reduce_terms(_xp, terms, opts.reduction, denominator)[0]


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
    the gradient has ``input``'s dtype. The gradient is the core's analytic gradient; double backward raises.
    """
    opts = _options(loss, gamma, reduction, label_smoothing, ignore_index)
    return _evaluate(
        input,
        target,
        weight,
        opts,
        validate=validate,
        validate_weight=True,
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

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _evaluate(
            input,
            target,
            self.weight,
            self.options,
            validate=self.validate,
            validate_weight=False,  # checked once, when the weights were made
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
