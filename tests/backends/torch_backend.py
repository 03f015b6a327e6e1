"""The PyTorch adapter: ``cbloss.adapters.torch.class_balanced_loss`` with the class dim 1 (like
``F.cross_entropy``), differentiated by torch autograd: through the ``autograd.Function`` the adapter registers,
and for CB softmax through PyTorch's own softmax cross-entropy kernels.

The tensors live on the device that ``CBLOSS_TEST_DEVICE`` names, ``cpu`` (the default) or ``cuda``
(``benchmarks/gpu_check.sh``): the same cases then check the adapter's CUDA path against the same oracle."""

from __future__ import annotations

import os

import numpy as np

from . import Backend

DEVICE_VARIABLE = "CBLOSS_TEST_DEVICE"


def device_under_test():
    """The ``torch.device`` of ``CBLOSS_TEST_DEVICE``; an error naming it for anything but an available CPU or
    CUDA device (a GPU run that fell back to the CPU would pass without testing the GPU)."""
    import torch

    name = os.environ.get(DEVICE_VARIABLE, "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"{DEVICE_VARIABLE}: 'cpu' or 'cuda' (or 'cuda:N'), got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{DEVICE_VARIABLE}: {name!r}, but PyTorch sees no CUDA device")
    return device


class TorchBackend(Backend):
    name = "torch"
    requires = ("torch",)
    dtypes = ("float64", "float32")
    low_precision = ("float16", "bfloat16")

    def loss_and_grad(self, logits, labels, weights, *, dtype, cotangent, options):
        import torch

        from cbloss.adapters.torch import class_balanced_loss

        device, torch_dtype = device_under_test(), getattr(torch, dtype)
        axis = 1 if logits.ndim > 1 else 0
        x = torch.tensor(np.moveaxis(logits, -1, axis), dtype=torch_dtype, device=device, requires_grad=True)
        if labels.dtype.kind == "f":
            y = torch.tensor(np.moveaxis(labels, -1, axis), dtype=torch_dtype, device=device)
        else:
            y = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)
        w = None if weights is None else torch.from_numpy(np.asarray(weights, dtype=np.float64)).to(device)
        loss = class_balanced_loss(x, y, w, **options)
        loss.backward(torch.as_tensor(np.asarray(cotangent, dtype=np.float64), dtype=loss.dtype, device=device))
        grad = np.moveaxis(x.grad.to(torch.float64).cpu().numpy(), axis, -1)
        return loss.detach().to(torch.float64).cpu().numpy(), grad


BACKEND = TorchBackend()
