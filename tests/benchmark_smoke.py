"""CI's tiny smoke run of the benchmark harness for one framework (the real measurement is `nox -s bench`;
speed and memory are never asserted in tests). Imported by tests/<framework>/test_benchmark_smoke.py.

Every section runs: speed, compile (PyTorch; with the ``aot_eager`` backend, which traces and differentiates
the graph as ``inductor`` does but generates no code, to stay fast), per-call overhead and peak memory, with the
single-label and the multi-label rows (the latter pass their value check before they are timed: an error row
otherwise)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.harness import (
    LOSSES,
    MEMORY_LABEL_SMOOTHING,
    MULTI_LABEL_COMPILED_TARGETS,
    MULTI_LABEL_LOSSES,
    MULTI_LABEL_TARGETS,
    OVERHEAD_SHAPE,
    QUICK_MULTI_LABEL_SHAPES,
    multi_label_name,
    run,
)
from benchmarks.report import markdown

NAMES = {f"CB {loss}" for loss in LOSSES}
MULTI_LABEL_NAMES = {multi_label_name(loss) for loss in MULTI_LABEL_LOSSES}
COMPILED_MODES = {"torch.compile", "jit", "xla"}
# The modes each framework's speed section measures, and PyTorch's compile section: a mode that silently
# produced no rows fails the smoke run.
SPEED_MODES = {"torch": {"eager"}, "jax": {"jit"}, "tensorflow": {"tf.function", "xla"}}


def setup_check_fails(cases: list, what: str) -> None:
    """Every multi-label case's setup raises harness.check_same's AssertionError naming ``what``: for tests
    that swap in a baseline off by a little, to show that the check before the timing can fail."""
    import pytest

    assert cases
    for case in cases:
        with pytest.raises(AssertionError, match=what):
            case.setup()


def _multi_label_rows(rows: list[dict], framework: str) -> None:
    """The multi-label rows of one timed section: each loss at each quick shape (class axis last outside
    PyTorch) in each mode, against a weighted baseline, with the goal of its mode."""
    multi = [r for r in rows if r["loss"] in MULTI_LABEL_NAMES]
    modes = {r["mode"] for r in multi}
    shapes = [list(s) if framework == "torch" else [s[0], *s[2:], s[1]] for s in QUICK_MULTI_LABEL_SHAPES]
    assert sorted((r["loss"], r["mode"], str(r["shape"])) for r in multi) == sorted(
        (name, mode, str(shape)) for name in MULTI_LABEL_NAMES for mode in modes for shape in shapes
    )
    for r in multi:
        loss = r["loss"].split()[1]
        goals = MULTI_LABEL_COMPILED_TARGETS if r["mode"] in COMPILED_MODES else MULTI_LABEL_TARGETS
        assert r["target"] == goals[loss]
        assert "w" in r["baseline"]  # the baseline carries the class weights


def _timed(r: dict) -> None:
    assert r["candidate_s"]["median"] > 0 and r["baseline_s"]["median"] > 0
    assert r["ratio"] == r["candidate_s"]["median"] / r["baseline_s"]["median"]


def smoke(framework: str, out: Path) -> None:
    report = run([framework], quick=True, repeats=1, warmup=1, out=out, compile_backend="aot_eager")
    results = report["results"]
    assert results, f"no benchmark case for {framework}"
    assert {r["loss"] for r in results} == NAMES | MULTI_LABEL_NAMES
    assert {r["mode"] for r in results} == SPEED_MODES[framework]
    for r in results:
        assert r["framework"] == framework
        assert "error" not in r, r["error"]  # for a multi-label row, also its value check
        _timed(r)
    _multi_label_rows(results, framework)

    if framework == "torch":
        assert {r["loss"] for r in report["compiled"]} == NAMES | MULTI_LABEL_NAMES
        for r in report["compiled"]:
            assert r["mode"] == "torch.compile" and r["compile_backend"] == "aot_eager"
            assert "error" not in r, r["error"]  # a compilation failure is recorded in the row, not raised
            _timed(r)
        _multi_label_rows(report["compiled"], framework)
    else:
        assert report["compiled"] == []

    assert {r["loss"] for r in report["overhead"]} == NAMES
    assert {r["mode"] for r in report["overhead"]} == SPEED_MODES[framework]
    for r in report["overhead"]:
        assert r["shape"] == list(OVERHEAD_SHAPE) and r["calls_per_sample"] >= 1
        assert "error" not in r, r["error"]
        _timed(r)

    if framework == "tensorflow":  # no allocator statistics on the CPU
        assert report["memory"] == [] and report["notes"]
    else:
        assert {(r["loss"], r["label_smoothing"]) for r in report["memory"]} == {
            (name, ls) for name in NAMES | MULTI_LABEL_NAMES for ls in MEMORY_LABEL_SMOOTHING
        }
        for r in report["memory"]:
            assert "error" not in r, r["error"]
            assert r["candidate_peak_bytes"] > 0 and r["baseline_peak_bytes"] > 0
            assert r["ratio"] == r["candidate_peak_bytes"] / r["baseline_peak_bytes"]

    written = json.loads((out / "results.json").read_text())
    assert written["meta"]["quick"] is True and written["meta"]["rows"] == ["single-label", "multi-label"]
    # CI's machines run glibc: the run pins its thresholds, and the report says so
    assert written["meta"]["allocator"] == "glibc malloc, mmap threshold 32 MiB, trim threshold 1 GiB"
    for key in ("results", "compiled", "overhead", "memory", "notes"):
        assert len(written[key]) == len(report[key])
    assert (out / "ratios.png").stat().st_size > 0
    text = markdown([written])
    assert f"allocator: {written['meta']['allocator']};" in text
    for heading in ("## Speed: eager", "## Speed: compiled", "## Per-call overhead", "## Peak memory"):
        assert heading in text
    for name in MULTI_LABEL_NAMES:
        assert f"| {name} |" in text
