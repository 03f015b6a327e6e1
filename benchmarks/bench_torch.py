"""PyTorch: cbloss.adapters.torch against PyTorch's own fused losses, forward + backward, eager, float32, CPU.

Cases (issue 3's targets): CB softmax vs unweighted ``F.cross_entropy`` (<= 1.10x; 1.25x at (4096, 10)),
CB sigmoid vs ``F.binary_cross_entropy_with_logits`` (<= 1.10x), CB focal vs the same (<= 1.5x), CB
softmax-focal vs ``F.cross_entropy`` (<= 1.5x). The candidate is the module a user writes
(``ClassBalancedLoss(counts, 0.9999, loss=...)``, weights from a long-tailed count vector, label validation on);
the BCE baseline gets its one-hot target precomputed outside the timed call. Shapes are (N, C) or a dense
(N, C, H, W) with the class dim 1. Both variants reset ``x.grad`` to None before each call, as for a
non-leaf logit tensor in training, so neither pays a gradient accumulation.

``memory(shapes, quick)``: the peak memory allocated during one forward + backward (gradient included), for
CB softmax and ``F.cross_entropy`` with the same class weights, from PyTorch's profiler memory timeline
(``profile_memory=True``: every CPU allocation and free while the call runs).
Run alone: ``python -m benchmarks.bench_torch``.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from cbloss.adapters.torch import ClassBalancedLoss

from .harness import SHAPES, Case

TARGETS = {"softmax": 1.10, "sigmoid": 1.10, "focal": 1.5, "softmax_focal": 1.5}
BASELINES = {
    "softmax": "F.cross_entropy",
    "softmax_focal": "F.cross_entropy",
    "sigmoid": "F.binary_cross_entropy_with_logits",
    "focal": "F.binary_cross_entropy_with_logits",
}


def _long_tail_counts(num_classes: int) -> np.ndarray:
    """Counts decaying 100x from the head to the tail class (CIFAR-LT style, imbalance 100)."""
    return np.round(5000 * 0.01 ** (np.arange(num_classes) / max(num_classes - 1, 1))) + 1


def _inputs(shape: tuple[int, ...], seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    num_classes = shape[1]
    x = torch.randn(shape, generator=generator).requires_grad_()
    y = torch.randint(0, num_classes, shape[:1] + shape[2:], generator=generator)
    return x, y


def _step(criterion, x, target):
    def run():
        x.grad = None
        criterion(x, target).backward()

    return run


def cases(shapes, quick) -> list[Case]:
    torch.set_num_threads(1)  # the shared machine: one thread is what is stable
    out = []
    for loss, baseline_name in BASELINES.items():
        for shape in shapes:
            x, y = _inputs(shape)
            x_base = x.detach().clone().requires_grad_()
            criterion = ClassBalancedLoss(_long_tail_counts(shape[1]), 0.9999, loss=loss)
            if baseline_name == "F.cross_entropy":
                baseline = _step(F.cross_entropy, x_base, y)
            else:
                onehot = F.one_hot(y, shape[1]).movedim(-1, 1).to(x.dtype).contiguous()
                baseline = _step(F.binary_cross_entropy_with_logits, x_base, onehot)
            target = TARGETS[loss]
            if loss == "softmax" and tuple(shape) == (4096, 10):
                target = 1.25
            out.append(
                Case(
                    framework="torch",
                    name=f"CB {loss}",
                    baseline_name=baseline_name,
                    shape=tuple(shape),
                    candidate=_step(criterion, x, y),
                    baseline=baseline,
                    target=target,
                    mode="eager",
                )
            )
    return out


def peak_bytes(fn) -> int:
    """Peak bytes allocated on the CPU while ``fn`` runs (profiler memory timeline; allocations made before
    ``fn`` are not counted)."""
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import MemoryProfileTimeline

    fn()  # warm up: lazy initialisation does not count
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as p:
        fn()
    _, sizes = MemoryProfileTimeline(p._memory_profile())._coalesce_timeline("cpu")
    return int(np.asarray(sizes).sum(axis=1).max()) if len(sizes) else 0


def memory(shapes, quick) -> list[dict]:
    rows = []
    for shape in shapes:
        x, y = _inputs(shape)
        criterion = ClassBalancedLoss(_long_tail_counts(shape[1]), 0.9999)
        unit = x.numel() * x.element_size()
        ours = peak_bytes(_step(criterion, x, y))
        # The baseline is F.cross_entropy with the same class weights (what the loss replaces): PyTorch's
        # weighted kernel itself allocates one (C,) vector more than the unweighted one, a weight, not a tile.
        weight = criterion.weight.to(x.dtype)
        theirs = peak_bytes(_step(functools.partial(F.cross_entropy, weight=weight), x, y))
        rows.append(
            {
                "framework": "torch",
                "loss": "CB softmax",
                "baseline": "F.cross_entropy(weight=w)",
                "shape": list(shape),
                "candidate_peak_bytes": ours,
                "baseline_peak_bytes": theirs,
                "candidate_peak_in_inputs": ours / unit,
                "baseline_peak_in_inputs": theirs / unit,
                "ratio": ours / theirs,
                "meets_target": ours <= theirs,
            }
        )
    return rows


def _print_memory(rows: list[dict]) -> None:
    print(f"{'loss':12} {'shape':16} {'cbloss peak':>12} {'F.ce(w) peak':>12}  (in units of the input's size)  ok")
    for r in rows:
        shape = "x".join(map(str, r["shape"]))
        ok = "yes" if r["meets_target"] else "NO"
        print(
            f"{r['loss']:12} {shape:16} {r['candidate_peak_in_inputs']:12.2f} {r['baseline_peak_in_inputs']:12.2f}"
            f"  {ok}"
        )


if __name__ == "__main__":
    _print_memory(memory(SHAPES, quick=False))
