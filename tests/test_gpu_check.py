"""benchmarks/gpu_check.sh, the GPU machine's one run, with a stand-in python3 that records each call: the
conformance suite on CUDA for each framework that sees a GPU, then the benchmark on CUDA with the options given.
(The checks themselves need a GPU; what runs where is checked here.)"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import benchmarks.__main__

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
STAND_IN = """#!/usr/bin/env bash
echo "${CBLOSS_TEST_DEVICE:-}|${CBLOSS_TEST_BACKEND:-}|${XLA_PYTHON_CLIENT_PREALLOCATE:-}|$*" >> "$CALLS"
case "$*" in
*torch.cuda.is_available*) exit "$TORCH_CUDA" ;;
*jax.default_backend*) exit "$JAX_GPU" ;;
esac
"""


def _run(tmp_path: Path, *args: str, torch_cuda: bool = True, jax_gpu: bool = True):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python3").write_text(STAND_IN)
    (bin_dir / "python3").chmod(0o755)
    calls = tmp_path / "calls.txt"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "CALLS": str(calls),
        "TORCH_CUDA": "0" if torch_cuda else "1",
        "JAX_GPU": "0" if jax_gpu else "1",
    }
    done = subprocess.run(["bash", str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True, text=True)
    lines = calls.read_text().splitlines() if calls.exists() else []
    return done, [line.split("|", 3) for line in lines]


def _module_calls(calls, module):
    return [
        (device, backend, prealloc, shlex.split(argv))
        for device, backend, prealloc, argv in calls
        if argv.startswith(f"-m {module}")
    ]


def test_all_runs_the_conformance_suite_on_cuda_then_the_benchmark(tmp_path, monkeypatch):
    done, calls = _run(tmp_path, "all", str(tmp_path / "out"), "--section", "speed")
    assert done.returncode == 0, done.stderr
    suites = _module_calls(calls, "pytest")
    assert [(device, backend) for device, backend, _, _ in suites] == [("cuda", "torch"), ("cuda", "jax")]
    assert all(argv[-1] == "tests/test_conformance.py" and prealloc == "false" for _, _, prealloc, argv in suites)
    (bench,) = _module_calls(calls, "benchmarks")
    seen = {}
    monkeypatch.setattr(
        benchmarks.__main__, "run", lambda frameworks, *args, **kwargs: seen.update(kwargs, frameworks=frameworks)
    )
    benchmarks.__main__.main(bench[3][2:])  # parsed by the benchmark's own command line
    assert seen["frameworks"] == ["torch", "jax"] and seen["device"] == "cuda" and list(seen["sections"]) == ["speed"]
    assert seen["out"] == tmp_path / "out"


def test_jax_without_a_gpu_is_left_out_and_said(tmp_path):
    done, calls = _run(tmp_path, "conformance", "out", jax_gpu=False)
    assert done.returncode == 0, done.stderr
    assert [backend for _, backend, _, _ in _module_calls(calls, "pytest")] == ["torch"]
    assert "JAX is not installed or sees no GPU" in (tmp_path / "out" / "jax-left-out.txt").read_text()
    assert not _module_calls(calls, "benchmarks")


def test_torch_without_cuda_stops_before_any_check(tmp_path):
    done, calls = _run(tmp_path, torch_cuda=False)
    assert done.returncode == 2
    assert not _module_calls(calls, "pytest") and not _module_calls(calls, "benchmarks")


def test_an_unknown_step_is_a_usage_error(tmp_path):
    done, calls = _run(tmp_path, "speed")
    assert done.returncode == 2 and done.stderr.startswith("usage: bash benchmarks/gpu_check.sh")
    assert calls == []
