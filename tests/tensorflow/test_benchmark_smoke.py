from benchmarks import bench_tensorflow
from benchmarks.harness import Settings
from tests.benchmark_smoke import setup_check_fails, smoke


def test_benchmark_harness_runs(tmp_path):
    smoke("tensorflow", tmp_path)


def test_multi_label_setup_rejects_a_different_baseline(monkeypatch):
    make_baseline = bench_tensorflow._multi_hot_sigmoid_ce

    def off_by_a_little(*args, **kwargs):
        baseline = make_baseline(*args, **kwargs)
        return lambda z, t, w: baseline(z, t, w) * (1 + 1e-3)

    monkeypatch.setattr(bench_tensorflow, "_multi_hot_sigmoid_ce", off_by_a_little)
    cases = bench_tensorflow.multi_label_cases([(3, 4, 2, 2), (6, 7)], Settings(quick=True))
    setup_check_fails(cases, "cbloss's value")


def test_multi_label_setup_passes_for_the_real_baseline():
    for case in bench_tensorflow.multi_label_cases([(3, 4, 2, 2), (6, 7)], Settings(quick=True)):
        case.setup()
