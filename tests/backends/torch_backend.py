"""The PyTorch adapter: ``cbloss.adapters.torch.class_balanced_loss`` with the class dim 1 (like
``F.cross_entropy``), differentiated by torch autograd: through the ``autograd.Function`` the adapter registers,
and for CB softmax through PyTorch's own softmax cross-entropy kernels."""

from __future__ import annotations

import numpy as np

from . import Backend


class TorchBackend(Backend):
    name = "torch"
    requires = ("torch",)
    dtypes = ("float64", "float32")
    low_precision = ("float16", "bfloat16")

    def loss_and_grad(self, logits, labels, weights, *, dtype, cotangent, options):
        import torch

        from cbloss.adapters.torch import class_balanced_loss

        torch_dtype = getattr(torch, dtype)
        axis = 1 if logits.ndim > 1 else 0
        x = torch.tensor(np.moveaxis(logits, -1, axis), dtype=torch_dtype, requires_grad=True)
        if labels.dtype.kind == "f":
            y = torch.tensor(np.moveaxis(labels, -1, axis), dtype=torch_dtype)
        else:
            y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        w = None if weights is None else torch.from_numpy(np.asarray(weights, dtype=np.float64))
        loss = class_balanced_loss(x, y, w, **options)
        loss.backward(torch.as_tensor(np.asarray(cotangent, dtype=np.float64), dtype=loss.dtype))
        grad = np.moveaxis(x.grad.to(torch.float64).numpy(), axis, -1)
        return loss.detach().to(torch.float64).numpy(), grad


BACKEND = TorchBackend()
