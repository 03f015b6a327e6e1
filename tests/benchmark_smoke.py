"""CI's tiny smoke run of the benchmark harness for one framework (the real measurement is `nox -s bench`;
speed is never asserted in tests). Imported by tests/<framework>/test_benchmark_smoke.py."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.harness import run


def smoke(framework: str, out: Path) -> None:
    results = run([framework], quick=True, repeats=1, warmup=1, out=out)
    assert results, f"no benchmark case for {framework}"
    assert {r["loss"] for r in results} >= {"CB softmax", "CB focal"}
    for r in results:
        assert r["framework"] == framework
        assert r["candidate_s"]["median"] > 0 and r["baseline_s"]["median"] > 0
        assert r["ratio"] == r["candidate_s"]["median"] / r["baseline_s"]["median"]
    written = json.loads((out / "results.json").read_text())
    assert len(written["results"]) == len(results)
    assert (out / "ratios.png").stat().st_size > 0
