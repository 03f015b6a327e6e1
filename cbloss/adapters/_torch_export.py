"""The loss as one PyTorch operator, ``cbloss::loss``, for ``torch.export``: an export keeps an
``autograd.Function``'s forward and drops its backward, so an exported graph holds this operator instead, whose
registered backward forms the core's analytic gradient again from the saved inputs (docs/torch.md). Its forward
computes the value alone, so a program used for inference pays nothing for the gradient."""

from __future__ import annotations

import ast

import array_api_compat.torch as xp
import torch

from ..engine import evaluate
from ..options import LOSS_OPTIONS, LossOptions, loss_options
from ..validation import compute_dtype
from ._torch_kernels import DOUBLE_BACKWARD, class_dim_of, compute_layout, input_gradient, ops_for, traced

__all__ = ["exported_loss", "exporting"]


@torch.library.custom_op("cbloss::loss", mutates_args=())
def _loss_op(
    input: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None, sample_weight: torch.Tensor | None,
    options: str, soft: bool, with_grad: bool
) -> list[torch.Tensor]:  # fmt: skip
    opts, z = _decoded(options), compute_layout(input, class_dim_of(input))
    ops = ops_for(opts.kind)
    value, grad = evaluate(ops, z, labels, weight, opts, soft=soft, with_grad=with_grad, sample_weight=sample_weight)
    return [value] if grad is None else [value, grad]


@_loss_op.register_fake
def _(input, labels, weight, sample_weight, options, soft, with_grad):
    class_dim, dtype = class_dim_of(input), compute_dtype(xp, input.dtype)
    positions = input.shape[:class_dim] + input.shape[class_dim + 1 :]
    value = input.new_empty(positions if _decoded(options).reduction == "none" else (), dtype=dtype)
    return [value] if not with_grad else [value, input.new_empty((*positions, input.shape[class_dim]), dtype=dtype)]


def _save_inputs(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:4])
    ctx.options, ctx.soft = inputs[4:6]


def _exported_backward(ctx, grad_outputs):
    # Only the backward's own call (with the gradient, below) has two outputs: reaching it is double backward.
    if len(grad_outputs) > 1:
        raise RuntimeError(DOUBLE_BACKWARD)
    saved = ctx.saved_tensors  # read once: a checkpoint's saved tensors unpack once
    grad = _loss_op(*saved, ctx.options, ctx.soft, True)[1]
    input, reduction = saved[0], _decoded(ctx.options).reduction
    return input_gradient(grad, grad_outputs[0], reduction, class_dim_of(input), input.dtype), *(None,) * 6


_loss_op.register_autograd(_exported_backward, setup_context=_save_inputs)


def exported_loss(input: torch.Tensor, labels, weight, sample_weight, opts: LossOptions, soft: bool) -> torch.Tensor:
    """The loss through ``cbloss::loss`` (the engine's arguments; the options as a string)."""
    return _loss_op(input, labels, weight, sample_weight, _encoded(opts), soft, False)[0]


def _encoded(opts: LossOptions) -> str:
    """The options as the operator's string argument, ``name=repr(value)`` pairs: plain string formatting of Python
    constants, which Dynamo folds while it traces a strict export."""
    return ";".join(f"{name}={opts[name]!r}" for name in LOSS_OPTIONS)


def _decoded(options: str) -> LossOptions:
    pairs = (pair.split("=", 1) for pair in options.split(";"))
    return loss_options(**{name: ast.literal_eval(value) for name, value in pairs})


def exporting(input: torch.Tensor) -> bool:
    """Whether ``input`` is traced by ``torch.export``: Dynamo's answer while it traces (strict), or a fake tensor
    outside Dynamo (non-strict)."""
    if torch.compiler.is_dynamo_compiling():
        return torch.compiler.is_exporting()
    return traced(input)
