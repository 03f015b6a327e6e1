from benchmarks import bench_jax
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
