"""CI's tiny smoke run of the benchmark harness for one framework (the real measurement is `nox -s bench`;
speed and memory are never asserted in tests). Imported by tests/<framework>/test_benchmark_smoke.py.

Every section runs: speed, compile (PyTorch; with the ``aot_eager`` backend, which traces and differentiates
the graph as ``inductor`` does but generates no code, to stay fast), per-call overhead and peak memory."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.harness import LOSSES, MEMORY_LABEL_SMOOTHING, OVERHEAD_SHAPE, run
from benchmarks.report import markdown

NAMES = {f"CB {loss}" for loss in LOSSES}


def _timed(r: dict) -> None:
    assert r["candidate_s"]["median"] > 0 and r["baseline_s"]["median"] > 0
    assert r["ratio"] == r["candidate_s"]["median"] / r["baseline_s"]["median"]


def smoke(framework: str, out: Path) -> None:
    report = run([framework], quick=True, repeats=1, warmup=1, out=out, compile_backend="aot_eager")
    results = report["results"]
    assert results, f"no benchmark case for {framework}"
    assert {r["loss"] for r in results} == NAMES
    for r in results:
        assert r["framework"] == framework
        assert "error" not in r, r["error"]
        _timed(r)

    if framework == "torch":
        assert {r["loss"] for r in report["compiled"]} == NAMES
        for r in report["compiled"]:
            assert r["mode"] == "torch.compile" and r["compile_backend"] == "aot_eager"
            if "error" in r:  # a compilation failure is recorded, not raised
                assert r["ratio"] is None and r["error"]
            else:
                _timed(r)
    else:
        assert report["compiled"] == []

    assert {r["loss"] for r in report["overhead"]} == NAMES
    for r in report["overhead"]:
        assert r["shape"] == list(OVERHEAD_SHAPE) and r["calls_per_sample"] >= 1
        assert "error" not in r, r["error"]
        _timed(r)

    if framework == "tensorflow":  # no allocator statistics on the CPU
        assert report["memory"] == [] and report["notes"]
    else:
        assert {(r["loss"], r["label_smoothing"]) for r in report["memory"]} == {
            (name, ls) for name in NAMES for ls in MEMORY_LABEL_SMOOTHING
        }
        for r in report["memory"]:
            assert "error" not in r, r["error"]
            assert r["candidate_peak_bytes"] > 0 and r["baseline_peak_bytes"] > 0
            assert r["ratio"] == r["candidate_peak_bytes"] / r["baseline_peak_bytes"]

    written = json.loads((out / "results.json").read_text())
    assert written["meta"]["quick"] is True
    for key in ("results", "compiled", "overhead", "memory", "notes"):
        assert len(written[key]) == len(report[key])
    assert (out / "ratios.png").stat().st_size > 0
    text = markdown([written])
    for heading in ("## Speed: eager", "## Speed: compiled", "## Per-call overhead", "## Peak memory"):
        assert heading in text
