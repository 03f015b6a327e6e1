"""One harness for every framework's benchmark.

Every number is a ratio, cbloss to the framework's own loss, measured side by side in one process: the
candidate and baseline calls are *interleaved* (round-robin, repeated), so that noise on a shared machine hits
both alike. Four sections, each optional (``--section``):

- ``speed``: forward + backward of each class-balanced loss against the framework's own fused unweighted loss
  at :data:`SHAPES`, in the framework's usual modes (PyTorch eager, JAX ``jit``, TensorFlow ``tf.function``
  and XLA);
- ``compile``: the same under ``torch.compile`` (both sides compiled, ``dynamic=False``, ``fullgraph=True``)
  at :data:`COMPILE_SHAPES`; JAX ``jit`` and TensorFlow XLA are already compiled in ``speed``;
- ``overhead``: the per-call cost, one forward + backward on a :data:`OVERHEAD_SHAPE` input, in microseconds;
- ``memory``: the peak memory of one forward + backward (gradient included), with and without label
  smoothing, against the framework's own loss with the same class weights, at :data:`SHAPES`.

Two kinds of rows (``--rows``, both by default): ``single-label``, the four losses on integer class indices
(:data:`LOSSES`), and ``multi-label``, CB sigmoid and CB focal with ``multi_label="class"`` (docs/conventions.md
§6.5) on seeded multi-hot targets with a long-tailed class frequency (:func:`multi_hot_targets`), against the
framework's fused BCE-with-logits on the same targets with the same class weights (per position
``sum_c w_c BCE(z_c, t_c)``, mean over positions), in the speed, compile and memory sections at
:data:`MULTI_LABEL_SHAPES` (memory: at the memory section's shapes). Before it is timed, each multi-label case
checks that cbloss at gamma = 0 gives the baseline's value and gradient (:func:`check_same`), so that both
sides compute the same number; a mismatch is recorded as the row's error. Their goals are
:data:`MULTI_LABEL_TARGETS` in the eager and graph modes and :data:`MULTI_LABEL_COMPILED_TARGETS` compiled.

``--quick`` uses small shapes everywhere (:data:`QUICK_SHAPES`, :data:`QUICK_COMPILE_SHAPES`,
:data:`QUICK_MULTI_LABEL_SHAPES`, :data:`QUICK_MEMORY_SHAPES`): CI's smoke run, and a check that every column
can be measured.

A framework module ``benchmarks/bench_<name>.py`` defines ``device(settings)`` (raises
:class:`DeviceUnavailable`), ``cases(shapes, settings) -> list[Case]`` and optionally
``compiled_cases(shapes, settings) -> list[Case]`` and ``memory(shapes, settings) -> list[dict]`` (which may
raise :class:`Skipped`); the multi-label rows come from ``multi_label_cases``, ``compiled_multi_label_cases``
and ``multi_label_memory``, with the same signatures. Results go to tables on stdout, ``results.json``,
``ratios.png`` and, on request, the markdown of :mod:`benchmarks.report`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import gc
import importlib
import json
import os
import platform
import resource
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

# (N, C) shapes of the issues, plus a dense segmentation-like input written as (N, C, H, W).
SHAPES: list[tuple[int, ...]] = [(4096, 10), (1024, 100), (512, 1000), (128, 8142), (64, 32000), (4, 19, 128, 128)]
QUICK_SHAPES: list[tuple[int, ...]] = [(256, 10), (8, 5, 8, 8)]
# torch.compile: the large shapes only (compilation costs seconds per cell).
COMPILE_SHAPES: list[tuple[int, ...]] = [(512, 1000), (128, 8142), (64, 32000), (4, 19, 128, 128)]
QUICK_COMPILE_SHAPES: list[tuple[int, ...]] = [(8, 5, 8, 8)]
OVERHEAD_SHAPE: tuple[int, ...] = (2, 3)
QUICK_MEMORY_SHAPES: list[tuple[int, ...]] = [(8, 5, 8, 8)]
MEMORY_LABEL_SMOOTHING = (0.0, 0.1)
MEMORY_TARGET = 2.0  # cbloss's peak <= 2x the framework's own loss's peak
FRAMEWORKS = ("torch", "jax", "tensorflow")
SECTIONS = ("speed", "compile", "overhead", "memory")
ROWS = ("single-label", "multi-label")
DEVICES = ("cpu", "cuda", "gpu")  # "gpu" is "cuda": each framework's GPU device
LOSSES = ("softmax", "sigmoid", "focal", "softmax_focal")
# Multi-label rows (multi_label="class"): the large shapes and the dense input (at the small ones the per-call
# overhead, measured by the single-label rows, dominates); the quick run keeps the dense one.
MULTI_LABEL_LOSSES: tuple[Literal["sigmoid", "focal"], ...] = ("sigmoid", "focal")
MULTI_LABEL_SHAPES: list[tuple[int, ...]] = [(512, 1000), (128, 8142), (64, 32000), (4, 19, 128, 128)]
QUICK_MULTI_LABEL_SHAPES: list[tuple[int, ...]] = [(8, 5, 8, 8)]
MULTI_LABEL_TARGETS = {"sigmoid": 1.10, "focal": 1.5}  # eager PyTorch, TensorFlow tf.function
MULTI_LABEL_COMPILED_TARGETS = {"sigmoid": 1.10, "focal": 1.25}  # torch.compile, JAX jit, TensorFlow XLA
MULTI_LABEL_HEAD_FREQUENCY = 0.5  # the head class is positive at half the positions ...
MULTI_LABEL_IMBALANCE = 100.0  # ... and the tail class at 1/100 of that


class DeviceUnavailable(RuntimeError):
    """The requested ``--device`` is not visible to a framework."""


class Skipped(Exception):
    """A section a framework cannot measure here; the message goes to the JSON's notes."""


@dataclasses.dataclass(frozen=True)
class Settings:
    quick: bool = False
    repeats: int = 51
    warmup: int = 5
    device: str = "cpu"  # "cpu" or "cuda" (normalised from "gpu")
    compile_backend: str = "inductor"
    overhead_calls: int = 50  # calls per timed sample in the overhead section
    sections: tuple[str, ...] = SECTIONS
    rows: tuple[str, ...] = ROWS

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device: one of {DEVICES}, got {self.device!r}")
        if self.device == "gpu":
            object.__setattr__(self, "device", "cuda")
        unknown = set(self.sections) - set(SECTIONS)
        if unknown:
            raise ValueError(f"sections: unknown {sorted(unknown)}; choose from {SECTIONS}")
        unknown = set(self.rows) - set(ROWS)
        if unknown:
            raise ValueError(f"rows: unknown {sorted(unknown)}; choose from {ROWS}")

    @property
    def gpu(self) -> bool:
        return self.device == "cuda"


@dataclasses.dataclass
class Case:
    """``candidate`` and ``baseline`` are zero-argument callables that run forward + backward once and block
    until the result is ready. ``target`` is the largest acceptable candidate/baseline median ratio.
    ``setup``, if given, runs once before the case's warm-up (e.g. resetting torch.compile's caches)."""

    framework: str
    name: str  # e.g. "CB softmax"
    baseline_name: str  # e.g. "F.cross_entropy"
    shape: tuple[int, ...]
    candidate: Callable[[], object]
    baseline: Callable[[], object]
    target: float | None = None
    mode: str = "eager"  # eager / jit / tf.function / xla / torch.compile
    setup: Callable[[], object] | None = None
    min_warmup: int = 1
    extra: dict = dataclasses.field(default_factory=dict)  # more JSON fields, e.g. the compile backend


def multi_label_name(loss: str) -> str:
    """The ``loss`` column of a multi-label row, e.g. ``"CB focal multi-label"``."""
    return f"CB {loss} multi-label"


def multi_label_frequencies(num_classes: int) -> np.ndarray:
    """Each class's probability of being positive at a position, decaying geometrically from the head class
    to the tail class: ``f_c = 0.5 * 0.01 ** (c / (C - 1))`` (head 0.5, tail 0.005, imbalance 100).

    Example:
        >>> multi_label_frequencies(3).round(4).tolist()
        [0.5, 0.05, 0.005]
    """
    decay = (1.0 / MULTI_LABEL_IMBALANCE) ** (np.arange(num_classes) / max(num_classes - 1, 1))
    return MULTI_LABEL_HEAD_FREQUENCY * decay


def multi_hot_targets(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Seeded float32 multi-hot targets of ``shape``, class axis last: ``t[..., c] = 1`` with probability
    :func:`multi_label_frequencies` ``(C)[c]``, independently per position and class (several positives per
    position, or none, with a long-tailed class frequency).

    Args:
        shape: the target's shape, class axis last (``(N, C)`` or ``(N, d1, ..., C)``).
        seed: the NumPy generator's seed.

    Example:
        >>> multi_hot_targets((4, 3)).shape
        (4, 3)
    """
    draws = np.random.default_rng(seed).random(shape, dtype=np.float32)
    return (draws < multi_label_frequencies(shape[-1]).astype(np.float32)).astype(np.float32)


def check_same(what: str, ours: tuple[object, object], theirs: tuple[object, object], rtol: float = 1e-5) -> None:
    """Raises AssertionError unless cbloss's ``(value, gradient)`` equals the baseline's: the value within
    ``rtol`` (float32 sums in a different order), each gradient entry within ``rtol`` of the gradient's largest
    magnitude. A benchmark compares times of the same number only after this check."""
    value, gradient = (np.asarray(a, dtype=np.float64) for a in ours)
    value_b, gradient_b = (np.asarray(a, dtype=np.float64) for a in theirs)
    if not abs(value - value_b) <= rtol * abs(value_b):
        raise AssertionError(f"{what}: cbloss's value {float(value)!r} != the baseline's {float(value_b)!r}")
    if gradient.shape != gradient_b.shape:
        raise AssertionError(f"{what}: gradient shape {gradient.shape} != the baseline's {gradient_b.shape}")
    worst = float(np.max(np.abs(gradient - gradient_b), initial=0.0))
    scale = float(np.max(np.abs(gradient_b), initial=0.0))
    if not worst <= rtol * scale:
        raise AssertionError(f"{what}: gradients differ by up to {worst!r} (the baseline's largest is {scale!r})")


def error_text(error: BaseException, limit: int = 4000) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= limit else text[:limit] + " [...]"


def _time_once(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    elapsed = time.perf_counter() - start
    return elapsed / calls, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / calls


def _summary(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"min": ordered[0], "median": ordered[len(ordered) // 2], "max": ordered[-1]}


def measure(case: Case, repeats: int, warmup: int, calls: int = 1) -> dict:
    """Times ``case``: ``warmup`` untimed calls of each variant (compilation happens there; the first call's
    time is kept as ``first_call_s``), then ``repeats`` interleaved samples of ``calls`` calls each. An
    exception (a compilation failure, say) is recorded as ``error`` with no ratio, instead of raised."""
    result = {
        "framework": case.framework,
        "mode": case.mode,
        "loss": case.name,
        "baseline": case.baseline_name,
        "shape": list(case.shape),
        "target": case.target,
        **case.extra,
    }
    times: dict[str, list[float]] = {"candidate": [], "baseline": []}
    faults: dict[str, list[float]] = {"candidate": [], "baseline": []}
    first: dict[str, float] = {}
    try:
        if case.setup is not None:
            case.setup()
        for i in range(max(warmup, case.min_warmup, 1)):
            for variant in ("candidate", "baseline"):
                t, _ = _time_once(getattr(case, variant), 1)
                if i == 0:
                    first[variant] = t
        gc.disable()
        try:
            for i in range(repeats):
                order = ("candidate", "baseline") if i % 2 == 0 else ("baseline", "candidate")
                for variant in order:
                    t, f = _time_once(getattr(case, variant), calls)
                    times[variant].append(t)
                    faults[variant].append(f)
        finally:
            gc.enable()
    except Exception as error:
        result.update(ratio=None, meets_target=None, error=error_text(error))
        return result
    result.update(
        {
            "calls_per_sample": calls,
            "first_call_s": first,
            "candidate_s": _summary(times["candidate"]),
            "baseline_s": _summary(times["baseline"]),
            "candidate_page_faults_median": sorted(faults["candidate"])[repeats // 2],
            "baseline_page_faults_median": sorted(faults["baseline"])[repeats // 2],
        }
    )
    result["ratio"] = result["candidate_s"]["median"] / result["baseline_s"]["median"]
    result["meets_target"] = None if case.target is None else result["ratio"] <= case.target
    return result


def load(framework: str):
    """The module ``benchmarks.bench_<framework>``, or None (printed) when the framework is not installed."""
    try:
        return importlib.import_module(f"benchmarks.bench_{framework}")
    except ModuleNotFoundError as error:
        print(f"[skip] {framework}: {error}")
        return None


def check_devices(frameworks: list[str], settings: Settings) -> dict[str, str]:
    """Each installed framework's device description for ``settings.device``; raises DeviceUnavailable."""
    devices = {}
    for name in frameworks:
        module = load(name)
        if module is not None:
            devices[name] = module.device(settings)
    return devices


def memory_row(
    framework: str,
    loss: str,
    baseline: str,
    shape: tuple[int, ...],
    label_smoothing: float,
    method: str,
    input_bytes: int,
    candidate: int | None,
    baseline_bytes: int | None,
    error: str | None = None,
) -> dict:
    """One row of the memory section (see :func:`benchmarks.report` for its layout)."""
    row = {
        "framework": framework,
        "loss": loss,
        "label_smoothing": label_smoothing,
        "baseline": baseline,
        "shape": list(shape),
        "method": method,
        "input_bytes": input_bytes,
        "candidate_peak_bytes": candidate,
        "baseline_peak_bytes": baseline_bytes,
        "target": MEMORY_TARGET,
    }
    if error is not None or candidate is None or baseline_bytes is None:
        row.update(ratio=None, meets_target=None, error=error or "no measurement")
        return row
    row["candidate_peak_in_inputs"] = candidate / input_bytes
    row["baseline_peak_in_inputs"] = baseline_bytes / input_bytes
    row["ratio"] = candidate / baseline_bytes if baseline_bytes else float("inf")
    row["meets_target"] = row["ratio"] <= MEMORY_TARGET
    return row


# ----------------------------------------------------------------------------------------------------------
# Tables on stdout
# ----------------------------------------------------------------------------------------------------------
def _shape(r: dict) -> str:
    return "x".join(map(str, r["shape"]))


def _ok(r: dict) -> str:
    if r.get("error"):
        return "error"
    return {None: "", True: "yes", False: "NO"}[r["meets_target"]]


def table(results: list[dict]) -> str:
    head = f"{'framework':10} {'mode':13} {'loss':22} {'vs':48} {'shape':18} {'ratio':>6} {'target':>6}  ok"
    lines = [head, "-" * len(head)]
    for r in results:
        target = "" if r["target"] is None else f"{r['target']:.2f}"
        ratio = "error" if r.get("error") else f"{r['ratio']:6.2f}"
        lines.append(
            f"{r['framework']:10} {r['mode']:13} {r['loss']:22} {r['baseline']:48} {_shape(r):18} "
            f"{ratio:>6} {target:>6}  {_ok(r)}"
        )
    return "\n".join(lines)


def overhead_table(rows: list[dict]) -> str:
    head = f"{'framework':10} {'mode':13} {'loss':18} {'vs':34} {'cbloss us':>10} {'native us':>10} {'ratio':>6}"
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.get("error"):
            numbers = f"{'error':>10} {'':>10} {'':>6}"
        else:
            c, b = r["candidate_s"]["median"] * 1e6, r["baseline_s"]["median"] * 1e6
            numbers = f"{c:10.1f} {b:10.1f} {r['ratio']:6.2f}"
        lines.append(f"{r['framework']:10} {r['mode']:13} {r['loss']:18} {r['baseline']:34} {numbers}")
    return "\n".join(lines)


def memory_table(rows: list[dict]) -> str:
    head = f"{'framework':10} {'peak memory of':22} {'ls':>4} {'vs':58} {'shape':16} {'ratio':>6} {'target':>6}  ok"
    lines = [head, "-" * len(head)]
    for r in rows:
        ratio = "error" if r.get("error") else f"{r['ratio']:6.2f}"
        lines.append(
            f"{r['framework']:10} {r['loss']:22} {r['label_smoothing']:4.2g} {r['baseline']:58} {_shape(r):16} "
            f"{ratio:>6} {r['target']:6.2f}  {_ok(r)}"
        )
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [r for r in results if not r.get("error")]
    labels = [f"{r['framework']}/{r['mode']} {r['loss']}\n{_shape(r)}" for r in results]
    ratios = [r["ratio"] for r in results]
    colors = ["tab:green" if r["meets_target"] in (True, None) else "tab:red" for r in results]
    fig, ax = plt.subplots(figsize=(8, max(3, 0.28 * len(results))))
    ax.barh(range(len(results)), ratios, color=colors)
    for i, r in enumerate(results):
        if r["target"] is not None:
            ax.plot([r["target"]] * 2, [i - 0.4, i + 0.4], color="black", lw=1)
    ax.axvline(1.0, color="gray", lw=0.8, ls="--")
    ax.set_yticks(range(len(results)), labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("median time ratio, cbloss / framework's own loss (forward + backward); black tick = target")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------------
def _versions(frameworks: list[str]) -> dict[str, str]:
    versions = {}
    for name, module_name in (("torch", "torch"), ("jax", "jax"), ("tensorflow", "tensorflow")):
        if name in frameworks:
            try:
                versions[name] = importlib.import_module(module_name).__version__
            except ImportError:
                pass
    return versions


# glibc's mallopt parameters (malloc.h) and the values pinned: with its defaults, freeing a block above the mmap
# threshold (128 KiB at first, raised by such frees up to 32 MiB) unmaps it, and a free at the heap's top trims the
# heap, so the next allocation of that size faults its pages in again: a cost that depends on the order of a
# call's allocations (hence on which side of a pair makes them), not on its arithmetic.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_PINNED = {_M_MMAP_THRESHOLD: 32 << 20, _M_TRIM_THRESHOLD: 1 << 30}


def pin_allocator() -> str:
    """Pins glibc's malloc thresholds (mmap 32 MiB, trim 1 GiB) for this process, so that both sides of a pair
    reuse the heap's pages instead of faulting fresh ones in at every call; returns what the run's meta records.
    Elsewhere (no glibc) the allocator is left as it is."""
    name = ctypes.util.find_library("c") if platform.system() == "Linux" else None
    if not name:
        return "default (no glibc)"
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return "default (no mallopt)"
    if not all(mallopt(parameter, value) == 1 for parameter, value in _PINNED.items()):
        return "default (mallopt refused the thresholds)"
    return "glibc malloc, mmap threshold 32 MiB, trim threshold 1 GiB"


def _code_state() -> dict:
    """cbloss's version and, in a git checkout, the commit and whether cbloss/ has uncommitted changes."""
    state: dict = {}
    try:
        import cbloss

        state["version"] = getattr(cbloss, "__version__", None)
    except ImportError:
        pass
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--", "cbloss"], cwd=root, capture_output=True, text=True
        )
    except OSError:
        return state
    if commit.returncode == 0:
        state["commit"] = commit.stdout.strip()
        state["uncommitted_changes"] = bool(changes.stdout.strip())
    return state


def _command(frameworks: list[str], settings: Settings) -> str:
    """The command line that makes this run (default options left out)."""
    words = ["python -m benchmarks", *(f"--framework {name}" for name in frameworks)]
    if settings.quick:
        words.append("--quick")
    if settings.device != "cpu":
        words.append(f"--device {settings.device}")
    if tuple(settings.sections) != SECTIONS:
        words += [f"--section {section}" for section in settings.sections]
    if tuple(settings.rows) != ROWS:
        words += [f"--rows {rows}" for rows in settings.rows]
    if settings.repeats != (5 if settings.quick else 51):
        words.append(f"--repeats {settings.repeats}")
    if settings.overhead_calls != (10 if settings.quick else 50):
        words.append(f"--overhead-calls {settings.overhead_calls}")
    if settings.compile_backend != "inductor":
        words.append(f"--compile-backend {settings.compile_backend}")
    return " ".join(words)


def _meta(
    frameworks: list[str], settings: Settings, devices: dict[str, str], threads: dict[str, str], allocator: str
) -> dict:
    return {
        "command": _command(frameworks, settings),
        "frameworks": list(devices),
        "quick": settings.quick,
        "repeats": settings.repeats,
        "warmup": settings.warmup,
        "overhead_calls_per_sample": settings.overhead_calls,
        "sections": list(settings.sections),
        "rows": list(settings.rows),
        "device": settings.device,
        "devices": devices,
        "compile_backend": settings.compile_backend,
        "threads": threads,
        "allocator": allocator,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "system": platform.system(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "versions": _versions(frameworks),
        "cbloss": _code_state(),
    }


def _progress(r: dict) -> None:
    ratio = "error" if r.get("error") else f"{r['ratio']:.2f}"
    print(f"  {r['framework']:10} {r['mode']:13} {r['loss']:22} {r['shape']} ratio {ratio}", flush=True)


def run(
    frameworks: list[str],
    quick: bool = False,
    repeats: int = 51,
    warmup: int = 5,
    out: Path = Path("benchmarks/results"),
    *,
    device: str = "cpu",
    compile_backend: str = "inductor",
    sections: tuple[str, ...] | list[str] = SECTIONS,
    overhead_calls: int | None = None,
    markdown: Path | None = None,
    rows: tuple[str, ...] | list[str] = ROWS,
) -> dict:
    """Runs the selected sections and kinds of rows for ``frameworks``, prints the tables and writes
    ``out/results.json`` and ``out/ratios.png`` (and the markdown report to ``markdown`` if given). Returns the
    JSON's content."""
    settings = Settings(
        quick=quick,
        repeats=repeats,
        warmup=warmup,
        device=device,
        compile_backend=compile_backend,
        overhead_calls=overhead_calls or (10 if quick else 50),
        sections=tuple(sections),
        rows=tuple(rows),
    )
    if settings.gpu:
        # Three frameworks share one GPU in this process: JAX would otherwise take 75% of its memory when its
        # client starts (TensorFlow grows its own on demand, bench_tensorflow._device).
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    devices = check_devices(frameworks, settings)  # fails before any measurement
    allocator = pin_allocator()  # before the first tensor of a measurement is allocated
    shapes = QUICK_SHAPES if quick else SHAPES
    compile_shapes = QUICK_COMPILE_SHAPES if quick else COMPILE_SHAPES
    multi_label_shapes = QUICK_MULTI_LABEL_SHAPES if quick else MULTI_LABEL_SHAPES
    memory_shapes = QUICK_MEMORY_SHAPES if quick else shapes
    single, multi = "single-label" in settings.rows, "multi-label" in settings.rows
    # (report key, the module's hook, its shapes) of the timed sections, in the order they run
    timed = [
        ("results", "cases", shapes, "speed" in settings.sections and single),
        ("results", "multi_label_cases", multi_label_shapes, "speed" in settings.sections and multi),
        ("compiled", "compiled_cases", compile_shapes, "compile" in settings.sections and single),
        ("compiled", "compiled_multi_label_cases", multi_label_shapes, "compile" in settings.sections and multi),
    ]
    memories = [("memory", "memory", single), ("multi_label_memory", "multi-label memory", multi)]
    report: dict = {"results": [], "compiled": [], "overhead": [], "memory": [], "notes": []}
    threads: dict[str, str] = {}
    for name in devices:
        module = load(name)
        for key, hook, hook_shapes, wanted in timed:
            if wanted and hasattr(module, hook):
                for case in getattr(module, hook)(hook_shapes, settings):
                    report[key].append(measure(case, settings.repeats, settings.warmup))
                    _progress(report[key][-1])
        if "overhead" in settings.sections and single:
            for case in module.cases([OVERHEAD_SHAPE], settings):
                case.target = None
                report["overhead"].append(measure(case, settings.repeats, settings.warmup, settings.overhead_calls))
                _progress(report["overhead"][-1])
        for hook, title, wanted in memories:
            if "memory" in settings.sections and wanted and hasattr(module, hook):
                try:
                    report["memory"].extend(getattr(module, hook)(memory_shapes, settings))
                except Skipped as skip:
                    report["notes"].append(f"{name} {title}: {skip}")
        threads[name] = module.threads(settings) if hasattr(module, "threads") else "framework default"
    report = {"meta": _meta(frameworks, settings, devices, threads, allocator), **report}
    write(report, out, markdown)
    return report


def write(report: dict, out: Path, markdown: Path | None = None) -> None:
    """Prints ``report``'s tables and writes ``out/results.json``, ``out/ratios.png`` and the markdown report
    to ``markdown`` if given."""
    for key, title, make in (
        ("results", "speed", table),
        ("compiled", "torch.compile", table),
        ("overhead", "per-call overhead", overhead_table),
        ("memory", "peak memory", memory_table),
    ):
        if report[key]:
            print(f"\n{title}\n{make(report[key])}")
    for note in report["notes"]:
        print(f"note: {note}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2))
    written = [out / "results.json"]
    if report["results"] or report["compiled"]:
        plot(report["results"] + report["compiled"], out / "ratios.png")
        written.append(out / "ratios.png")
    if markdown is not None:
        from .report import markdown as render

        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(render([report], [str(out / "results.json")]))
        written.append(markdown)
    print("wrote " + ", ".join(map(str, written)))


# What tells a row from the others of its section.
_ROW_KEY = ("framework", "mode", "loss", "baseline", "shape", "label_smoothing")


def combine(reports: list[dict]) -> dict:
    """One report from the ``reports`` of one command run in separate processes (``--processes``): each cell is
    the row of the run whose ratio is the median of that cell's ratios (the lower middle one for an even number
    of runs), with every run's ratio in ``ratio_runs`` (None where it failed), so that a cell's verdict is not
    one process's luck (the code its compilation got, where its memory lies). Runs in which a cell failed are
    left out of its median (the report says how many failed); a cell that failed in every run keeps the first run's
    error. The notes are every run's, each once."""
    first = reports[0]
    notes = [note for report in reports for note in report.get("notes", [])]
    combined = {"meta": {**first["meta"], "processes": len(reports)}, "notes": list(dict.fromkeys(notes))}
    combined["meta"]["command"] = f"{first['meta']['command']} --processes {len(reports)}"
    for key in ("results", "compiled", "overhead", "memory"):
        sections = [report.get(key, []) for report in reports]
        keys = [[tuple(str(row.get(field)) for field in _ROW_KEY) for row in rows] for rows in sections]
        if any(k != keys[0] for k in keys):
            raise ValueError(f"{key}: the runs measured different cells")
        cells = []
        for runs in zip(*sections, strict=True):
            measured = sorted((row for row in runs if row.get("ratio") is not None), key=lambda row: row["ratio"])
            cell = dict(measured[(len(measured) - 1) // 2] if measured else runs[0])
            cell["ratio_runs"] = [row.get("ratio") for row in runs]
            cells.append(cell)
        combined[key] = cells
    return combined
