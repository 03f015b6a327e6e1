"""`python -m benchmarks --processes K`: the same measurement in K fresh processes, each cell reported as the
process whose ratio is the cell's median, with the range over the processes (benchmarks.harness.combine), and
the report that shows it. Framework-free: the runs are stand-ins."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import benchmarks.__main__
from benchmarks.harness import combine
from benchmarks.report import markdown

META = {"command": "python -m benchmarks --framework torch", "frameworks": ["torch"], "repeats": 51}


def _row(ratio, shape=(4, 3), loss="CB focal", **more):
    row = {"framework": "torch", "mode": "eager", "loss": loss, "baseline": "bce", "shape": list(shape)}
    if ratio is None:
        return {**row, "ratio": None, "error": "it failed", **more}
    timings = {"candidate_s": {"median": ratio * 1e-3}, "baseline_s": {"median": 1e-3}}
    return {**row, **timings, "ratio": ratio, "target": 1.25, "meets_target": ratio <= 1.25, **more}


def _report(*ratios):
    """One run's report: a cell per ratio, each at its own shape."""
    rows = [_row(ratio, shape=(i + 1, 3)) for i, ratio in enumerate(ratios)]
    return {"meta": dict(META), "results": rows, "compiled": [], "overhead": [], "memory": [], "notes": []}


def test_each_cell_is_the_run_of_its_median_ratio():
    runs = [_report(1.30, 1.0, None, None), _report(1.10, 1.2, 0.9, None), _report(1.24, 1.1, 1.4, None)]
    combined = combine(runs)
    assert combined["meta"]["processes"] == 3
    assert combined["meta"]["command"] == META["command"] + " --processes 3"
    first, second, third, failed = combined["results"]
    assert first["ratio"] == 1.24 and first["meets_target"] and first["candidate_s"]["median"] == 1.24e-3
    assert first["ratio_runs"] == [1.30, 1.10, 1.24]
    assert second["ratio"] == 1.1 and second["ratio_runs"] == [1.0, 1.2, 1.1]
    # a failed run is left out: the lower middle of the two others
    assert third["ratio"] == 0.9 and third["ratio_runs"] == [None, 0.9, 1.4] and "error" not in third
    assert failed["ratio"] is None and failed["error"] == "it failed"
    assert [r["ratio"] for r in runs[0]["results"]] == [1.30, 1.0, None, None]  # the runs are left as they were


def test_every_run_s_notes_are_kept_once():
    runs = [_report(1.0), _report(1.0), _report(1.0)]
    runs[0]["notes"], runs[1]["notes"] = ["a skipped", "b skipped"], ["b skipped", "c skipped"]
    assert combine(runs)["notes"] == ["a skipped", "b skipped", "c skipped"]


def test_runs_of_different_cells_are_not_combined():
    other = _report(1.0, 1.0)
    other["results"][1]["loss"] = "CB sigmoid"
    with pytest.raises(ValueError, match=r"^results: the runs measured different cells"):
        combine([_report(1.0, 1.0), other])


def test_the_report_gives_the_median_and_the_range():
    text = markdown([combine([_report(1.30), _report(1.10), _report(1.24)])])
    assert "| 1.240 | 1.000 | 1.24 (1.10-1.30) | <= 1.25 | yes |" in text
    assert "in each of 3 processes" in text
    assert "| 1.240 | 1.000 | 1.24 | <= 1.25 | yes |" in markdown([combine([_report(1.24), _report(1.2449)])])
    partly = markdown([combine([_report(None), _report(None), _report(5.0)])])
    assert "| 5.00 (2 of 3 failed) |" in partly
    assert "| 1.00 (1.00-2.00; 1 of 3 failed) |" in markdown([combine([_report(None), _report(2.0), _report(1.0)])])
    single = markdown([_report(1.30)])
    assert "| 1.300 | 1.000 | 1.30 | <= 1.25 | **no** |" in single and "processes (each cell" not in single


def test_processes_run_the_command_in_fresh_processes_and_combine_them(tmp_path, monkeypatch):
    calls = []

    def fake_run(argv, *args, **kwargs):
        calls.append(argv)
        out = Path(argv[argv.index("--out") + 1])
        out.mkdir(parents=True)
        ratio = [1.5, 1.1, 1.3][len(calls) - 1]
        report = {**_report(), "overhead": [_row(ratio, target=None, meets_target=None)]}
        (out / "results.json").write_text(json.dumps(report))
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    argv = ["--processes", "3", "--framework", "torch", "--section", "overhead", "--repeats", "7", "--out"]
    benchmarks.__main__.main([*argv, str(tmp_path), "--markdown", str(tmp_path / "report.md")])
    assert len(calls) == 3
    for i, call in enumerate(calls):
        assert call[1:3] == ["-m", "benchmarks"] and "--processes" not in call
        assert call[call.index("--out") + 1] == str(tmp_path / f"process-{i}")
        for flag, value in (("--framework", "torch"), ("--section", "overhead"), ("--repeats", "7")):
            assert call[call.index(flag) + 1] == value
    combined = json.loads((tmp_path / "results.json").read_text())
    assert combined["meta"]["processes"] == 3 and combined["overhead"][0]["ratio"] == 1.3
    assert "1.30 (1.10-1.50)" in (tmp_path / "report.md").read_text()


def test_processes_must_be_at_least_one():
    with pytest.raises(SystemExit):
        benchmarks.__main__.main(["--processes", "0"])
