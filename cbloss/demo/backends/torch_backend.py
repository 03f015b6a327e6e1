"""PyTorch: ``cbloss.adapters.torch.class_balanced_loss`` (the core's analytic gradient as an
``autograd.Function``), autograd through the tiny model and ``torch.optim.Adam``."""

from __future__ import annotations

import numpy as np
import torch

from cbloss.adapters.torch import class_balanced_loss

from . import ADAM_BETAS, ADAM_EPS, weights_at

NAME = "torch"


def fit(layers, x, y, weights, *, loss, gamma, steps, lr, multi_label=None):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the matrices are tiny: threads only add overhead (and contend on a busy machine)
    try:
        params = [torch.tensor(p, dtype=torch.float32, requires_grad=True) for layer in layers for p in layer]
        xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        yt = torch.from_numpy(np.asarray(y, np.float32 if multi_label else np.int64))
        wt = None if weights is None else torch.from_numpy(np.asarray(weights, dtype=np.float32))
        opt = torch.optim.Adam(params, lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS, fused=True)
        n_layers = len(layers)
        for step in range(steps):
            opt.zero_grad(set_to_none=True)
            h = xt
            for i in range(n_layers):
                h = torch.addmm(params[2 * i + 1], h, params[2 * i])
                if i < n_layers - 1:
                    h = torch.relu(h)
            # The labels do not change: check their values once, not at every step.
            value = class_balanced_loss(
                h, yt, weights_at(wt, step), loss=loss, gamma=gamma, reduction="mean", multi_label=multi_label,
                validate=step == 0,
            )  # fmt: skip
            value.backward()
            opt.step()
        return [
            (params[2 * i].detach().numpy().copy(), params[2 * i + 1].detach().numpy().copy()) for i in range(n_layers)
        ]
    finally:
        torch.set_num_threads(threads)
