"""PyTorch: cbloss.adapters.torch against PyTorch's own fused losses, forward + backward, float32, on the CPU
(one thread) or with ``--device cuda`` on the GPU.

Speed cases (targets, eager): CB softmax vs unweighted ``F.cross_entropy`` (<= 1.10x; 1.25x at
(4096, 10)), CB sigmoid vs ``F.binary_cross_entropy_with_logits`` (<= 1.10x), CB focal vs the same (<= 1.5x),
CB softmax-focal vs ``F.cross_entropy`` (<= 1.5x). The candidate is the module a user writes
(``ClassBalancedLoss(counts, 0.9999, loss=...)``, weights from a long-tailed count vector, label validation on);
the BCE baseline gets its one-hot target precomputed outside the timed call. Shapes are (N, C) or a dense
(N, C, H, W) with the class dim 1. Both variants reset ``x.grad`` to None before each call, as for a
non-leaf logit tensor in training, so neither pays a gradient accumulation.

``compiled_cases``: the same pairs with ``torch.compile(dynamic=False, fullgraph=True)`` applied to both the
module and the native loss (the backward is compiled by AOTAutograd). Goals: CB sigmoid <= 1.10x, CB focal
and CB softmax-focal <= 1.25x; CB softmax is informative. ``torch._dynamo.reset()`` runs before each case, so
no case hits the recompilation limit; compilation happens in the untimed warm-up, and a failure is recorded.

``memory``: the peak memory allocated during one forward + backward (gradient included) of every loss, with
``label_smoothing`` 0 and 0.1, against PyTorch's own loss with the same class weights and smoothing
(``F.cross_entropy(weight=w, label_smoothing=ls)``; ``F.binary_cross_entropy_with_logits(weight=w)`` on the
smoothed one-hot target, built from the labels within the measured call, as the class-balanced loss has to).
On the CPU it is read from PyTorch's profiler memory timeline
(``profile_memory=True``: every allocation and free while the call runs); on CUDA from
``torch.cuda.max_memory_allocated``. Run alone: ``python -m benchmarks.bench_torch``.

Multi-label rows (``multi_label_cases``, ``compiled_multi_label_cases``, ``multi_label_memory``): the module with
``loss="sigmoid"`` or ``"focal"`` and ``multi_label="class"`` on the harness's seeded long-tailed multi-hot
float32 targets (dim 1 the class dim), against ``F.binary_cross_entropy_with_logits(z, t, weight=w,
reduction="sum") / N``, ``w`` the module's class weights shaped ``(C, 1, ..., 1)`` and ``N`` the number of
positions: the same number as the module's ``"mean"``, the mean over positions of the class sum
(docs/conventions.md §6.5), which each case's setup checks at gamma = 0 (value and gradient) before it is timed.
Eager and ``torch.compile`` as above; goals: CB sigmoid <= 1.10x, CB focal <= 1.5x eager and <= 1.25x compiled.
The memory rows smooth the baseline's target towards 1/2 within the measured call, as the module does.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from cbloss import class_balanced_weights
from cbloss.adapters.torch import ClassBalancedLoss

from .harness import (
    LOSSES,
    MEMORY_LABEL_SMOOTHING,
    MULTI_LABEL_COMPILED_TARGETS,
    MULTI_LABEL_LOSSES,
    MULTI_LABEL_TARGETS,
    SHAPES,
    Case,
    DeviceUnavailable,
    Settings,
    check_same,
    error_text,
    memory_row,
    multi_hot_targets,
    multi_label_name,
)

TARGETS = {"softmax": 1.10, "sigmoid": 1.10, "focal": 1.5, "softmax_focal": 1.5}
COMPILE_TARGETS = {"softmax": None, "sigmoid": 1.10, "focal": 1.25, "softmax_focal": 1.25}
BASELINES = {
    "softmax": "F.cross_entropy",
    "softmax_focal": "F.cross_entropy",
    "sigmoid": "F.binary_cross_entropy_with_logits",
    "focal": "F.binary_cross_entropy_with_logits",
}
BETA = 0.9999
# The memory baselines take the same integer labels, class weights and label smoothing (BCE: the smoothed one-hot
# target is built inside the measured call, as the class-balanced loss builds what it needs).
CE_WEIGHTED = "F.cross_entropy(weight=w)"
BCE_WEIGHTED = "F.binary_cross_entropy_with_logits(one_hot(y), weight=w)"
# The multi-label baseline: the same multi-hot targets and class weights, summed over classes, mean over positions.
BCE_MULTI_HOT = "F.binary_cross_entropy_with_logits(t, weight=w)"


def device(settings: Settings) -> str:
    if not settings.gpu:
        return "cpu"
    if not torch.cuda.is_available():
        raise DeviceUnavailable(
            f"--device cuda/gpu: PyTorch sees no CUDA GPU (torch {torch.__version__}, "
            f"built with CUDA {torch.version.cuda}; torch.cuda.is_available() is False)"
        )
    return f"cuda ({torch.cuda.get_device_name(0)})"


def threads(settings: Settings) -> str:
    return "GPU" if settings.gpu else f"torch.set_num_threads({torch.get_num_threads()})"


def _device(settings: Settings) -> torch.device:
    if not settings.gpu:
        torch.set_num_threads(1)  # the shared machine: one thread is what is stable
    return torch.device("cuda" if settings.gpu else "cpu")


def _long_tail_counts(num_classes: int) -> np.ndarray:
    """Counts decaying 100x from the head to the tail class (CIFAR-LT style, imbalance 100)."""
    return np.round(5000 * 0.01 ** (np.arange(num_classes) / max(num_classes - 1, 1))) + 1


def _inputs(shape: tuple[int, ...], dev: torch.device, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    num_classes = shape[1]
    x = torch.randn(shape, generator=generator).to(dev).requires_grad_()
    y = torch.randint(0, num_classes, shape[:1] + shape[2:], generator=generator).to(dev)
    return x, y


def _one_hot(y: torch.Tensor, num_classes: int, dtype: torch.dtype, label_smoothing: float = 0.0) -> torch.Tensor:
    """The (N, C, ...) one-hot target of ``y``, smoothed as ``(1 - ls) * t + ls / C``."""
    onehot = F.one_hot(y, num_classes).movedim(-1, 1).to(dtype)
    if label_smoothing:
        onehot = onehot * (1 - label_smoothing) + label_smoothing / num_classes
    return onehot.contiguous()


def _step(criterion, x, target, sync: bool = False):
    def run():
        x.grad = None
        criterion(x, target).backward()
        if sync:
            torch.cuda.synchronize()

    return run


def _cross_entropy(x, y):
    return F.cross_entropy(x, y)


def _bce(x, t):
    return F.binary_cross_entropy_with_logits(x, t)


def _pairs(shapes, settings: Settings, compiled: bool) -> list[Case]:
    dev = _device(settings)
    targets = COMPILE_TARGETS if compiled else TARGETS
    out = []
    for loss, baseline_name in BASELINES.items():
        for shape in shapes:
            x, y = _inputs(shape, dev)
            x_base = x.detach().clone().requires_grad_()
            criterion = ClassBalancedLoss(_long_tail_counts(shape[1]), BETA, loss=loss).to(dev)
            if baseline_name == "F.cross_entropy":
                native, native_target = _cross_entropy, y
            else:
                native, native_target = _bce, _one_hot(y, shape[1], x.dtype)
            extra = {}
            if compiled:
                options = dict(dynamic=False, fullgraph=True, backend=settings.compile_backend)
                criterion, native = torch.compile(criterion, **options), torch.compile(native, **options)
                extra = {"compile_backend": settings.compile_backend, "dynamic": False, "fullgraph": True}
            target = targets[loss]
            if not compiled and loss == "softmax" and tuple(shape) == (4096, 10):
                target = 1.25
            out.append(
                Case(
                    framework="torch",
                    name=f"CB {loss}",
                    baseline_name=baseline_name,
                    shape=tuple(shape),
                    candidate=_step(criterion, x, y, settings.gpu),
                    baseline=_step(native, x_base, native_target, settings.gpu),
                    target=target,
                    mode="torch.compile" if compiled else "eager",
                    setup=torch._dynamo.reset if compiled else None,
                    min_warmup=2 if compiled else 1,
                    extra=extra,
                )
            )
    return out


def cases(shapes, settings: Settings) -> list[Case]:
    return _pairs(shapes, settings, compiled=False)


def compiled_cases(shapes, settings: Settings) -> list[Case]:
    return _pairs(shapes, settings, compiled=True)


def _multi_label_inputs(shape: tuple[int, ...], dev: torch.device, seed: int = 0):
    """Logits as in the single-label rows and the harness's multi-hot targets, float32 with the class dim 1."""
    x, _ = _inputs(shape, dev, seed)
    class_last = multi_hot_targets((shape[0], *shape[2:], shape[1]), seed)
    return x, torch.from_numpy(np.ascontiguousarray(np.moveaxis(class_last, -1, 1))).to(dev)


def _broadcast_weight(counts: np.ndarray, shape: tuple[int, ...], dev: torch.device) -> torch.Tensor:
    """The module's float32 class weights for ``counts``, shaped (C, 1, ..., 1) to broadcast along dim 1."""
    weight = torch.as_tensor(class_balanced_weights(counts, BETA), dtype=torch.float32, device=dev)
    return weight.reshape((shape[1],) + (1,) * (len(shape) - 2))


def _multi_label_bce(class_weight: torch.Tensor, positions: int, label_smoothing: float = 0.0):
    """PyTorch's fused BCE on multi-hot targets with class weights, summed over classes, mean over the
    ``positions``: cbloss's ``multi_label="class"`` at gamma = 0 with ``reduction="mean"`` (docs/conventions.md
    §6.5). Label smoothing moves the target towards 1/2 within the call, as cbloss does."""

    def bce(x, t):
        if label_smoothing:
            t = t * (1 - label_smoothing) + label_smoothing / 2
        return F.binary_cross_entropy_with_logits(x, t, weight=class_weight, reduction="sum") / positions

    return bce


def _same_as_baseline(what: str, counts: np.ndarray, loss: str, x: torch.Tensor, t: torch.Tensor, native):
    """A setup step: raises AssertionError unless the module for ``loss`` at gamma = 0 gives ``native``'s value
    and gradient on ``(x, t)`` (eager), so that the timed pair computes the same number."""

    def check() -> None:
        criterion = ClassBalancedLoss(counts, BETA, loss=loss, gamma=0.0, multi_label="class").to(x.device)
        results = []
        for fn in (criterion, native):
            z = x.detach().clone().requires_grad_()
            value = fn(z, t)
            (gradient,) = torch.autograd.grad(value, z)
            results.append((value.item(), gradient.cpu().numpy()))
        check_same(what, results[0], results[1])

    return check


def _then(*steps):
    def run() -> None:
        for step in steps:
            step()

    return run


def _multi_label_pairs(shapes, settings: Settings, compiled: bool) -> list[Case]:
    dev = _device(settings)
    targets = MULTI_LABEL_COMPILED_TARGETS if compiled else MULTI_LABEL_TARGETS
    out = []
    for loss in MULTI_LABEL_LOSSES:
        for shape in shapes:
            x, t = _multi_label_inputs(tuple(shape), dev)
            x_base = x.detach().clone().requires_grad_()
            counts = _long_tail_counts(shape[1])
            criterion = ClassBalancedLoss(counts, BETA, loss=loss, multi_label="class").to(dev)
            native = _multi_label_bce(_broadcast_weight(counts, tuple(shape), dev), x.numel() // shape[1])
            setup = _same_as_baseline(f"{multi_label_name(loss)} {tuple(shape)}", counts, loss, x, t, native)
            ours: Callable = criterion
            theirs: Callable = native
            extra = {}
            if compiled:
                backend = settings.compile_backend
                ours = torch.compile(criterion, dynamic=False, fullgraph=True, backend=backend)
                theirs = torch.compile(native, dynamic=False, fullgraph=True, backend=backend)
                extra = {"compile_backend": backend, "dynamic": False, "fullgraph": True}
                setup = _then(setup, torch._dynamo.reset)
            out.append(
                Case(
                    framework="torch",
                    name=multi_label_name(loss),
                    baseline_name=BCE_MULTI_HOT,
                    shape=tuple(shape),
                    candidate=_step(ours, x, t, settings.gpu),
                    baseline=_step(theirs, x_base, t, settings.gpu),
                    target=targets[loss],
                    mode="torch.compile" if compiled else "eager",
                    setup=setup,
                    min_warmup=2 if compiled else 1,
                    extra=extra,
                )
            )
    return out


def multi_label_cases(shapes, settings: Settings) -> list[Case]:
    return _multi_label_pairs(shapes, settings, compiled=False)


def compiled_multi_label_cases(shapes, settings: Settings) -> list[Case]:
    return _multi_label_pairs(shapes, settings, compiled=True)


def _bce_from_labels(x, y, weight, ls):
    return F.binary_cross_entropy_with_logits(x, _one_hot(y, x.shape[1], x.dtype, ls), weight=weight)


@contextlib.contextmanager
def _quiet_stderr():
    """Silences the profiler's native start/stop lines on file descriptor 2 (Python errors still raise)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_bytes(fn, x: torch.Tensor) -> int:
    """Peak bytes allocated while ``fn`` runs, beyond what was allocated before (``x.grad`` is cleared
    first, so the gradient ``fn`` makes counts): the profiler's memory timeline on the CPU,
    ``torch.cuda.max_memory_allocated`` on CUDA."""
    fn()  # warm up: lazy initialisation does not count
    x.grad = None
    if x.is_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Action, MemoryProfileTimeline

    activities = [ProfilerActivity.CPU]
    with _quiet_stderr(), profile(activities=activities, profile_memory=True, record_shapes=True, with_stack=True) as p:
        fn()
    timeline = MemoryProfileTimeline(p._memory_profile())
    _, sizes = timeline._coalesce_timeline("cpu")
    # The timeline also holds every tensor the call reads that existed before it (the inputs, the weights): left
    # out, as the CUDA branch and JAX's compiled_bytes leave them out.
    before = sum(
        size
        for _, action, (key, _), size in timeline.timeline
        if action == Action.PREEXISTING and key.device.type == "cpu"
    )
    return int(np.asarray(sizes).sum(axis=1).max()) - before if len(sizes) else 0


def _method(dev: torch.device) -> str:
    return "torch.cuda.max_memory_allocated" if dev.type == "cuda" else "torch.profiler memory timeline (CPU)"


def memory(shapes, settings: Settings) -> list[dict]:
    dev = _device(settings)
    rows = []
    for shape in shapes:
        x, y = _inputs(shape, dev)
        num_classes = shape[1]
        counts = _long_tail_counts(num_classes)
        weight = ClassBalancedLoss(counts, BETA).to(dev).weight.to(x.dtype)
        class_weight = weight.reshape((num_classes,) + (1,) * (len(shape) - 2))  # broadcasts along dim 1
        unit = x.numel() * x.element_size()
        for ls in MEMORY_LABEL_SMOOTHING:
            natives = {
                CE_WEIGHTED: _step(
                    functools.partial(F.cross_entropy, weight=weight, label_smoothing=ls), x, y, settings.gpu
                ),
                BCE_WEIGHTED: _step(
                    functools.partial(_bce_from_labels, weight=class_weight, ls=ls), x, y, settings.gpu
                ),
            }
            theirs: dict[str, int | None] = {}
            errors: dict[str, str] = {}
            for name, step in natives.items():
                try:
                    theirs[name] = peak_bytes(step, x)
                except Exception as error:
                    theirs[name], errors[name] = None, "baseline: " + error_text(error)
            for loss in LOSSES:
                native = CE_WEIGHTED if loss.startswith("softmax") else BCE_WEIGHTED
                ours, error = None, errors.get(native)
                try:
                    criterion = ClassBalancedLoss(counts, BETA, loss=loss, label_smoothing=ls).to(dev)
                    ours = peak_bytes(_step(criterion, x, y, settings.gpu), x)
                except Exception as exc:
                    error = error_text(exc)
                rows.append(
                    memory_row(
                        "torch", f"CB {loss}", native, shape, ls, _method(dev), unit, ours, theirs[native], error
                    )
                )
    return rows


def multi_label_memory(shapes, settings: Settings) -> list[dict]:
    dev = _device(settings)
    rows = []
    for shape in shapes:
        shape = tuple(shape)
        x, t = _multi_label_inputs(shape, dev)
        counts = _long_tail_counts(shape[1])
        class_weight = _broadcast_weight(counts, shape, dev)
        unit = x.numel() * x.element_size()
        for ls in MEMORY_LABEL_SMOOTHING:
            theirs, baseline_failure = None, None
            try:
                native = _multi_label_bce(class_weight, x.numel() // shape[1], ls)
                theirs = peak_bytes(_step(native, x, t, settings.gpu), x)
            except Exception as failure:
                baseline_failure = "baseline: " + error_text(failure)
            for loss in MULTI_LABEL_LOSSES:
                ours, problem = None, baseline_failure
                try:
                    criterion = ClassBalancedLoss(counts, BETA, loss=loss, multi_label="class", label_smoothing=ls)
                    ours = peak_bytes(_step(criterion.to(dev), x, t, settings.gpu), x)
                except Exception as failure:
                    problem = error_text(failure)
                name, method = multi_label_name(loss), _method(dev)
                rows.append(memory_row("torch", name, BCE_MULTI_HOT, shape, ls, method, unit, ours, theirs, problem))
    return rows


if __name__ == "__main__":
    from .harness import memory_table

    print(memory_table(memory(SHAPES, Settings())))
