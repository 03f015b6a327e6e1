"""One harness for every framework's benchmark.

A framework module ``benchmarks/bench_<name>.py`` defines ``cases(shapes, quick) -> list[Case]``; this harness
times every case's candidate and baseline *interleaved in one process* (round-robin, repeated), so that noise on
this shared machine hits both alike, and reports min/median/max per variant, the median ratio and whether it
meets the target. Results go to a table on stdout, a JSON file and a PNG plot.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib
import json
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path

# (N, C) shapes of the issues, plus a dense segmentation-like input written as (N, C, H, W).
SHAPES: list[tuple[int, ...]] = [(4096, 10), (1024, 100), (512, 1000), (128, 8142), (64, 32000), (4, 19, 128, 128)]
QUICK_SHAPES: list[tuple[int, ...]] = [(256, 10), (8, 5, 8, 8)]
FRAMEWORKS = ("torch", "jax", "tensorflow")


@dataclasses.dataclass
class Case:
    """``candidate`` and ``baseline`` are zero-argument callables that run forward + backward once and block
    until the result is ready. ``target`` is the largest acceptable candidate/baseline median ratio."""

    framework: str
    name: str  # e.g. "CB softmax"
    baseline_name: str  # e.g. "F.cross_entropy"
    shape: tuple[int, ...]
    candidate: Callable[[], object]
    baseline: Callable[[], object]
    target: float | None = None
    mode: str = "eager"  # eager / jit / tf.function / xla ...


def _time_once(fn: Callable[[], object]) -> tuple[float, int]:
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    return elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


def measure(case: Case, repeats: int, warmup: int) -> dict:
    for _ in range(warmup):
        case.candidate()
        case.baseline()
    times: dict[str, list[float]] = {"candidate": [], "baseline": []}
    faults: dict[str, list[int]] = {"candidate": [], "baseline": []}
    gc.disable()
    try:
        for i in range(repeats):
            order = ("candidate", "baseline") if i % 2 == 0 else ("baseline", "candidate")
            for variant in order:
                t, f = _time_once(getattr(case, variant))
                times[variant].append(t)
                faults[variant].append(f)
    finally:
        gc.enable()

    def summary(values: list[float]) -> dict:
        ordered = sorted(values)
        return {"min": ordered[0], "median": ordered[len(ordered) // 2], "max": ordered[-1]}

    result = {
        "framework": case.framework,
        "mode": case.mode,
        "loss": case.name,
        "baseline": case.baseline_name,
        "shape": list(case.shape),
        "target": case.target,
        "candidate_s": summary(times["candidate"]),
        "baseline_s": summary(times["baseline"]),
        "candidate_page_faults_median": sorted(faults["candidate"])[repeats // 2],
        "baseline_page_faults_median": sorted(faults["baseline"])[repeats // 2],
    }
    result["ratio"] = result["candidate_s"]["median"] / result["baseline_s"]["median"]
    result["meets_target"] = None if case.target is None else result["ratio"] <= case.target
    return result


def collect(frameworks: list[str], quick: bool) -> list[Case]:
    shapes = QUICK_SHAPES if quick else SHAPES
    cases: list[Case] = []
    for name in frameworks:
        try:
            module = importlib.import_module(f"benchmarks.bench_{name}")
        except ModuleNotFoundError as error:
            print(f"[skip] {name}: {error}")
            continue
        cases.extend(module.cases(shapes, quick))
    return cases


def collect_memory(frameworks: list[str], quick: bool) -> list[dict]:
    """Peak-memory rows from the framework modules that define ``memory(shapes, quick) -> list[dict]`` (each
    row: framework, loss, baseline, shape, candidate/baseline peak bytes, ratio, meets_target)."""
    shapes = QUICK_SHAPES if quick else SHAPES
    rows: list[dict] = []
    for name in frameworks:
        try:
            module = importlib.import_module(f"benchmarks.bench_{name}")
        except ModuleNotFoundError:
            continue
        if hasattr(module, "memory"):
            rows.extend(module.memory(shapes, quick))
    return rows


def memory_table(rows: list[dict]) -> str:
    head = f"{'framework':10} {'peak memory of':18} {'vs':34} {'shape':18} {'ratio':>6}  ok"
    lines = [head, "-" * len(head)]
    for r in rows:
        shape = "x".join(map(str, r["shape"]))
        ok = "yes" if r["meets_target"] else "NO"
        lines.append(f"{r['framework']:10} {r['loss']:18} {r['baseline']:34} {shape:18} {r['ratio']:6.2f}  {ok}")
    return "\n".join(lines)


def table(results: list[dict]) -> str:
    head = f"{'framework':10} {'mode':12} {'loss':18} {'vs':34} {'shape':18} {'ratio':>6} {'target':>6}  ok"
    lines = [head, "-" * len(head)]
    for r in results:
        target = "" if r["target"] is None else f"{r['target']:.2f}"
        ok = {None: "", True: "yes", False: "NO"}[r["meets_target"]]
        shape = "x".join(map(str, r["shape"]))
        lines.append(
            f"{r['framework']:10} {r['mode']:12} {r['loss']:18} {r['baseline']:34} {shape:18} "
            f"{r['ratio']:6.2f} {target:>6}  {ok}"
        )
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['framework']}/{r['mode']} {r['loss']}\n{'x'.join(map(str, r['shape']))}" for r in results]
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


def run(frameworks: list[str], quick: bool, repeats: int, warmup: int, out: Path) -> list[dict]:
    results = []
    for case in collect(frameworks, quick):
        results.append(measure(case, repeats, warmup))
        r = results[-1]
        print(f"  {r['framework']:10} {r['mode']:12} {r['loss']:18} {r['shape']} ratio {r['ratio']:.2f}", flush=True)
    print(table(results))
    memory = collect_memory(frameworks, quick)
    if memory:
        print(memory_table(memory))
    out.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "quick": quick, "repeats": repeats}
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results, "memory": memory}, indent=2))
    if results:
        plot(results, out / "ratios.png")
    print(f"wrote {out / 'results.json'} and {out / 'ratios.png'}")
    return results
