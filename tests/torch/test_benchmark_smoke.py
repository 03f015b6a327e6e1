import re

import numpy as np
import pytest

from benchmarks import bench_torch
from benchmarks.harness import Settings, check_same, multi_hot_targets, multi_label_frequencies
from tests.benchmark_smoke import setup_check_fails, smoke


def test_benchmark_harness_runs(tmp_path):
    smoke("torch", tmp_path)


@pytest.mark.parametrize("cases", ["multi_label_cases", "compiled_multi_label_cases"])
def test_multi_label_setup_rejects_a_different_baseline(monkeypatch, cases):
    make_baseline = bench_torch._multi_label_bce

    def off_by_a_little(*args, **kwargs):
        baseline = make_baseline(*args, **kwargs)
        return lambda x, t: baseline(x, t) * (1 + 1e-3)

    monkeypatch.setattr(bench_torch, "_multi_label_bce", off_by_a_little)
    settings = Settings(quick=True, compile_backend="aot_eager")
    setup_check_fails(getattr(bench_torch, cases)([(3, 4, 2, 2), (6, 7)], settings), "cbloss's value")


def test_multi_label_setup_passes_for_the_real_baseline():
    for case in bench_torch.multi_label_cases([(3, 4, 2, 2), (6, 7)], Settings(quick=True)):
        case.setup()


@pytest.mark.parametrize("shape", [(20000, 6), (500, 8, 8, 11)])
def test_multi_hot_targets_are_seeded_long_tailed_multi_hot(shape):
    targets = multi_hot_targets(shape, seed=3)
    assert targets.dtype == np.float32 and targets.shape == shape
    assert set(np.unique(targets)) <= {0.0, 1.0}
    np.testing.assert_array_equal(targets, multi_hot_targets(shape, seed=3))
    assert not np.array_equal(targets, multi_hot_targets(shape, seed=4))
    frequency = targets.reshape(-1, shape[-1]).mean(axis=0)
    expected = 0.5 * 0.01 ** (np.arange(shape[-1]) / (shape[-1] - 1))
    np.testing.assert_allclose(multi_label_frequencies(shape[-1]), expected, rtol=1e-12)
    # binomial: within 5 standard deviations of each class's frequency
    spread = np.sqrt(expected * (1 - expected) / (targets.size // shape[-1]))
    assert np.all(np.abs(frequency - expected) <= 5 * spread)
    assert np.all(np.diff(expected) < 0)
    assert np.mean(targets.reshape(-1, shape[-1]).sum(axis=1) > 1) > 0.1  # several positives at many positions


def test_cpu_peak_bytes_counts_what_the_call_allocates_not_what_it_reads():
    """The peak of one call leaves out the tensors that existed before it (the inputs), as the CUDA branch and
    JAX's compiled_bytes do: reading a large tensor costs nothing, the gradient and the temporaries count."""
    import torch

    x = torch.zeros(1000, 100, requires_grad=True)
    large = torch.ones(10, 1000, 100)

    def read_only():
        return float((large[0, 0, :1] + 1.0).sum())

    def backward():
        torch.exp(x).sum().backward()  # exp's result, saved for the backward, and x.grad: both at the peak

    size = x.numel() * x.element_size()
    assert bench_torch.peak_bytes(read_only, x) < size / 100
    assert 2 * size <= bench_torch.peak_bytes(backward, x) < 3 * size


def test_check_same_compares_values_and_gradients():
    gradient = np.array([[0.5, -1.0], [2.0, 0.0]])
    check_same("CB x", (3.0, gradient), (3.0 * (1 + 1e-7), gradient + 1e-8))
    with pytest.raises(AssertionError, match=re.escape("CB x: cbloss's value 3.0 != the baseline's 3.01")):
        check_same("CB x", (3.0, gradient), (3.01, gradient))
    with pytest.raises(AssertionError, match=re.escape("CB x: gradients differ by up to 0.001")):
        check_same("CB x", (3.0, gradient), (3.0, gradient + np.array([[0.0, 1e-3], [0.0, 0.0]])))
    with pytest.raises(AssertionError, match="gradient shape"):
        check_same("CB x", (3.0, gradient), (3.0, gradient[0]))
