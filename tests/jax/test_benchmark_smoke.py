import os

import jax
import pytest

from benchmarks import bench_jax
from benchmarks.__main__ import main
from benchmarks.harness import Settings
from tests.benchmark_smoke import setup_check_fails, smoke


def test_benchmark_harness_runs(tmp_path):
    smoke("jax", tmp_path)


def test_multi_label_setup_rejects_a_different_baseline(monkeypatch):
    make_baseline = bench_jax._multi_hot_bce

    def off_by_a_little(*args, **kwargs):
        baseline = make_baseline(*args, **kwargs)
        return lambda z, t, w: baseline(z, t, w) * (1 + 1e-3)

    monkeypatch.setattr(bench_jax, "_multi_hot_bce", off_by_a_little)
    setup_check_fails(bench_jax.multi_label_cases([(3, 4, 2, 2), (6, 7)], Settings(quick=True)), "cbloss's value")


def test_multi_label_setup_passes_for_the_real_baseline():
    for case in bench_jax.multi_label_cases([(3, 4, 2, 2), (6, 7)], Settings(quick=True)):
        case.setup()


@pytest.mark.skipif(any(d.platform == "gpu" for d in jax.devices()), reason="a GPU is present: this run would measure")
def test_a_gpu_run_without_a_gpu_stops_with_the_reason_and_leaves_jax_memory_unclaimed(monkeypatch, tmp_path):
    """``--device cuda`` where JAX sees no GPU: exit status 1 and a one-line reason before anything is measured.
    On the way the run has asked JAX not to preallocate its GPU memory, which the other frameworks share."""
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    with pytest.raises(SystemExit, match=r"^python -m benchmarks: error: --device cuda/gpu: JAX sees no GPU") as exit:
        main(["--quick", "--device", "cuda", "--framework", "jax", "--out", str(tmp_path)])
    assert exit.value.code != 0 and not (tmp_path / "results.json").exists()
    assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
