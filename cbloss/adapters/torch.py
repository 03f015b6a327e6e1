"""PyTorch adapter: :class:`ClassBalancedLoss` (a ``torch.nn.Module``) and :func:`class_balanced_loss`.

The class dimension is 1, like ``F.cross_entropy`` (docs/conventions.md §8). The adapter converts, validates (§11),
registers the core's analytic gradient (:mod:`cbloss.losses`) with a :class:`torch.autograd.Function` (§10; under
``torch.export`` with the operator of :mod:`cbloss.adapters._torch_export`) and picks PyTorch's kernels where they
compute the core's definition (§13, :mod:`cbloss.adapters._torch_kernels`); its ``torch.distributed`` bindings are
:mod:`cbloss.adapters._torch_distributed`'s."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import array_api_compat.torch as xp
import torch

from ..engine import evaluate
from ..options import describe, loss_options, split_options, with_options_doc
from ..reductions import MEANS
from ..validation import (
    check_choice,
    check_counts_match,
    compute_dtype,
    host_class_weights,
    host_sample_weight,
    prepare_inputs,
)
from ..weights import class_balanced_weights
from . import _torch_distributed as distributed
from ._torch_distributed import all_reduce_counts
from ._torch_export import exported_loss, exporting
from ._torch_kernels import (
    DOUBLE_BACKWARD,
    TorchPrimitives,
    binary_cross_entropy,
    cast_weights,
    class_dim_of,
    compute_layout,
    constant,
    cross_entropy,
    input_gradient,
    ops_for,
    traced,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..options import LossKwargs, ModuleKwargs

__all__ = ["ClassBalancedLoss", "TorchPrimitives", "all_reduce_counts", "class_balanced_loss"]


class _CoreGradient(torch.autograd.Function):
    """The core's loss and analytic gradient from one forward pass; backward scales the gradient by
    ``grad_output``. The gradient is a second output so that ``setup_context`` may save it, and a differentiable
    one so that a derivative of it (double backward) comes back here and raises: it is no constant."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, labels, weight, sample_weight, config):  # type: ignore[override]
        opts, soft, class_dim, global_sum = config
        z = compute_layout(input, class_dim)
        kwargs = dict(soft=soft, with_grad=True, sample_weight=sample_weight, global_sum=global_sum)
        return evaluate(ops_for(opts.kind), z, labels, weight, opts, **kwargs)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, _, _, _, (opts, _, class_dim, _) = inputs
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(output[1])
        ctx.reduction, ctx.class_dim, ctx.dtype = opts.reduction, class_dim, input.dtype

    @staticmethod
    def backward(ctx, grad_output, grad_of_grad):
        # Dynamo traces this with every gradient present; AOTAutograd rejects double backward itself.
        if grad_of_grad is not None and not traced(grad_of_grad):
            raise RuntimeError(DOUBLE_BACKWARD)
        if grad_output is None:
            return None, None, None, None, None
        grad = input_gradient(ctx.saved_tensors[0], grad_output, ctx.reduction, ctx.class_dim, ctx.dtype)
        return grad, None, None, None, None


# Function.apply binds its arguments with inspect.signature(forward) at every call, reading __signature__ first.
_CoreGradient.forward.__signature__ = inspect.signature(_CoreGradient.forward)  # type: ignore[attr-defined]


def _in_torch_names(error: Exception) -> Exception:
    """The core names its arguments logits/labels; PyTorch's are input/target."""
    message = str(error).replace("logits'", "input's").replace("logits", "input")
    message = message.replace("labels:", "target:").replace("labels'", "target's")
    return type(error)(message)


def _check_flags(validate: Any, global_normalizer: Any, reduction: str) -> None:
    check_choice("validate", validate, (True, False))
    if check_choice("global_normalizer", global_normalizer, (True, False)) and reduction not in MEANS:
        raise ValueError(f"global_normalizer: applies to reduction='mean' or 'weighted_mean', got {reduction!r}")


def _loss(input, target, weight, sample_weight, opts, validate, global_normalizer, group, from_counts, names=True):
    for name, value in (("input", input), ("target", target)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name}: must be a torch.Tensor, got {type(value).__name__}")
    _check_flags(validate, global_normalizer, opts.reduction)
    device = input.device.type
    if torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device):
        with torch.autocast(device, enabled=False):  # it would run the class sums in float16; §9 says float32
            flags = (validate, global_normalizer, group, from_counts, names)
            return _loss(input, target, weight, sample_weight, opts, *flags)
    class_dim = class_dim_of(input)
    # Reading values synchronises with a GPU; a traced graph or the meta device has none to read.
    check = validate and device != "meta" and not traced(input)
    dtype = compute_dtype(xp, input.dtype)
    target, weight = constant(target), constant(weight, host_class_weights, dtype)
    sample_weight = constant(sample_weight, host_sample_weight, dtype)
    try:
        if from_counts and weight is not None:
            check_counts_match(weight, input, class_dim)
        if opts.multi_label is not None or target.is_floating_point():  # weights read at every element
            weight = cast_weights(weight, dtype)
        given = prepare_inputs(xp, input, target, weight, sample_weight, opts, class_dim, input.device, check)
    except (TypeError, ValueError) as error:  # named as PyTorch names them, or (for Keras) as the core does
        raise (_in_torch_names(error) if names else error) from None
    labels, w, sw, soft, _, dtype = given
    global_sum = distributed.global_sum(group) if global_normalizer else None
    if opts.kind == "softmax":
        return cross_entropy(input, labels, w, opts, soft, class_dim, sw, global_sum, check)
    if opts.kind == "sigmoid" and opts.multi_label is not None:
        return binary_cross_entropy(input, labels, w, opts, class_dim, sw, global_sum)
    if exporting(input):
        if global_sum is not None:
            raise ValueError(  # the operator that carries the gradient under an export takes no process group
                "global_normalizer: not supported for this loss in an exported program; export without it"
            )
        return exported_loss(input, labels, w, sw, opts, soft)
    if torch.is_grad_enabled() and input.requires_grad:
        return _CoreGradient.apply(input, labels, w, sw, (opts, soft, class_dim, global_sum))[0]
    z = compute_layout(input, class_dim)  # no gradient wanted: the value alone
    ops = ops_for(opts.kind)
    return evaluate(ops, z, labels, w, opts, soft=soft, with_grad=False, sample_weight=sw, global_sum=global_sum)[0]


@with_options_doc
def class_balanced_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: Any = None,
    *,
    sample_weight: Any = None,
    validate: bool = True,
    global_normalizer: bool = False,
    process_group: Any = None,
    **options: Unpack[LossKwargs],
) -> torch.Tensor:
    """Class-balanced loss of ``input`` (logits, class dim 1) against ``target``, like ``F.cross_entropy``.

    Per position ``sum_c t_c w_c L_c(z)`` for the target distribution ``t``: ``w_y * L_y(z)`` for a class
    index ``y`` (docs/conventions.md §4, §6).

    Args:
        input: ``(N, C)``, ``(N, C, d1, ..., dk)`` or unbatched ``(C,)``, floating point; float16/bfloat16 are
            computed in float32 (the loss is float32, the gradient in ``input``'s dtype).
        target: class indices (``input``'s shape without dim 1; 0-d for ``(C,)``) or probabilities
            (``input``'s shape).
        weight: ``(C,)`` class weights (tensor, array or sequence) or None; a constant.
        sample_weight: per-position weights shaped like the class indices, or None; each position's loss is
            multiplied by its weight (``"mean"`` still divides by the counted positions, docs/conventions.md §7).
        validate: check label values eagerly (a GPU synchronisation); skipped under ``torch.compile`` and
            ``torch.export`` and on the ``meta`` device.
        global_normalizer: ``"mean"``/``"weighted_mean"`` divide by the denominator all-reduced over
            ``process_group``, over the world size (docs/conventions.md §12).
        **options: the loss options below.

    Options:
    {options}

    Returns:
        The loss (per position for ``"none"``). Its gradient cannot be differentiated again, except for softmax
        and for sigmoid on multi-hot targets.

    Example:
        >>> import torch
        >>> from cbloss.adapters.torch import class_balanced_loss
        >>> x = torch.tensor([[2.0, 0.0, -1.0]]); y = torch.tensor([0])
        >>> round(class_balanced_loss(x, y, [0.5, 1.0, 2.0], reduction="sum").item(), 4)
        0.0849
    """
    opts = loss_options(**options)
    return _loss(input, target, weight, sample_weight, opts, validate, global_normalizer, process_group, False)


@with_options_doc
class ClassBalancedLoss(torch.nn.Module):
    """Class-balanced loss as a module: a drop-in for ``nn.CrossEntropyLoss(weight=...)``.

    ``ClassBalancedLoss(samples_per_class, beta)`` computes the weights once, in float64 on the host
    (:func:`cbloss.class_balanced_weights`); ``from_weights(w)`` takes ``(C,)`` weights, or None. They live in
    the float64 buffer ``weight`` (it follows ``.to(device)``, is in ``state_dict``, stays float64 through
    ``.half()``, docs/conventions.md §9), cast at every call, so a change to it shows in the next call.

    Options:
    {options}
    {weight_options}

    Example:
        >>> import torch
        >>> from cbloss.adapters.torch import ClassBalancedLoss
        >>> criterion = ClassBalancedLoss([100, 10, 1], beta=0.99, loss="focal")
        >>> round(criterion(torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0])).item(), 6)
        0.008352
    """

    weight: torch.Tensor | None

    def __init__(
        self,
        samples_per_class: Any,
        beta: float,
        *,
        validate: bool = True,
        global_normalizer: bool = False,
        process_group: Any = None,
        **options: Unpack[ModuleKwargs],
    ):
        super().__init__()
        weight_options, opts = split_options(options)
        weights = class_balanced_weights(samples_per_class, beta, **weight_options)
        self._setup(weights, opts, float(beta), weight_options["normalize"], validate, global_normalizer, process_group)

    @classmethod
    def from_weights(
        cls,
        weight: Any,
        *,
        validate: bool = True,
        global_normalizer: bool = False,
        process_group: Any = None,
        **options: Unpack[LossKwargs],
    ) -> ClassBalancedLoss:
        """A loss with the given ``(C,)`` class weights (finite, >= 0), or None for an unweighted loss."""
        self = cls.__new__(cls)
        torch.nn.Module.__init__(self)
        weights = None if weight is None else host_class_weights(weight)
        self._setup(weights, loss_options(**options), None, None, validate, global_normalizer, process_group)
        return self

    def _setup(self, weights, options, beta, normalize, validate, global_normalizer, process_group) -> None:
        _check_flags(validate, global_normalizer, options.reduction)
        self.register_buffer("weight", None if weights is None else torch.tensor(weights, dtype=torch.float64))
        self.options, self.beta, self.normalize, self.process_group = options, beta, normalize, process_group
        self._from_counts = beta is not None  # a class-count mismatch is the counts' fault
        self.validate, self.global_normalizer = bool(validate), bool(global_normalizer)

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> ClassBalancedLoss:
        # Module-wide dtype casts must not round the weights (float16 rounds 0.9999 to 1); device moves apply.
        weight = self.weight
        result = super()._apply(fn, *args, **kwargs)
        if weight is not None and self.weight is not None and self.weight.dtype != torch.float64:
            self.weight = weight.to(device=self.weight.device)
        return result

    @property
    def num_classes(self) -> int | None:
        return None if self.weight is None else int(self.weight.shape[0])

    def forward(self, input: torch.Tensor, target: torch.Tensor, sample_weight: Any = None) -> torch.Tensor:
        settings = (self.validate, self.global_normalizer, self.process_group, self._from_counts)
        return _loss(input, target, self.weight, sample_weight, self.options, *settings)

    def set_weights(self, weight: Any) -> None:
        """Replace the class weights in place (checked: ``(C,)``, finite, >= 0), for a re-weighting schedule: the
        buffer keeps its identity, so a compiled module sees the new values without recompiling. ``beta`` and
        ``normalize`` (which the loss does not read) become None: they no longer say how the weights were made."""
        if self.weight is None:
            raise ValueError("weights: this loss is unweighted (from_weights(None)); build it with weights to set them")
        with torch.no_grad():
            self.weight.copy_(torch.from_numpy(host_class_weights(weight, self.num_classes)))
        self.beta = self.normalize = None

    def extra_repr(self) -> str:
        text = f"num_classes={self.num_classes}, beta={self.beta}, normalize={self.normalize!r}, "
        return text + describe(self.options) + (", global_normalizer=True" if self.global_normalizer else "")
