from tests.benchmark_smoke import smoke


def test_benchmark_harness_runs(tmp_path):
    smoke("tensorflow", tmp_path)
