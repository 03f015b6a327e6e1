"""The conformance suite's PyTorch backend on the device CBLOSS_TEST_DEVICE names (benchmarks/gpu_check.sh runs
it on CUDA): the name reaches every tensor the adapter is given, and a name it cannot honour is an error, never a
run on the CPU that looks like a GPU run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests import oracle
from tests.backends import torch_backend

LOGITS = np.array([[2.0, 0.0, -1.0], [0.5, -3.0, 1.0]])
LABELS = np.array([0, 2])
WEIGHTS = np.array([0.5, 1.0, 2.0])


def _run():
    options = dict(loss="focal", gamma=2.0, reduction="sum")
    return torch_backend.BACKEND.loss_and_grad(
        LOGITS, LABELS, WEIGHTS, dtype="float64", cotangent=np.array(1.0), options=options
    )


@pytest.mark.parametrize("name", ["tpu", "meta", "", "cuda:x"])
def test_a_device_it_cannot_run_on_is_an_error_naming_the_variable(monkeypatch, name):
    monkeypatch.setenv("CBLOSS_TEST_DEVICE", name)
    with pytest.raises(ValueError, match=r"^CBLOSS_TEST_DEVICE: 'cpu' or 'cuda'"):
        _run()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is available here")
def test_cuda_without_a_cuda_device_is_an_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv("CBLOSS_TEST_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match=r"^CBLOSS_TEST_DEVICE: 'cuda', but PyTorch sees no CUDA device"):
        _run()


@pytest.mark.parametrize("name", ["cpu", None])
def test_every_tensor_the_adapter_is_given_is_on_the_named_device(monkeypatch, name):
    if name is None:
        monkeypatch.delenv("CBLOSS_TEST_DEVICE", raising=False)
    else:
        monkeypatch.setenv("CBLOSS_TEST_DEVICE", name)
    import cbloss.adapters.torch as adapter

    seen = []
    original = adapter.class_balanced_loss

    def spy(input, target, weight, **options):
        seen.extend(t.device for t in (input, target, weight))
        return original(input, target, weight, **options)

    monkeypatch.setattr(adapter, "class_balanced_loss", spy)
    value, grad = _run()
    assert seen == [torch.device("cpu")] * 3
    want = oracle.loss_and_grad(LOGITS, LABELS, WEIGHTS, loss="focal", gamma=2.0, reduction="sum")
    np.testing.assert_allclose(value, want.value, rtol=1e-12)
    np.testing.assert_allclose(grad, want.grad, rtol=1e-12, atol=1e-15)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is available here: the real run covers it")
def test_cuda_is_where_the_tensors_are_made(monkeypatch):
    """With CUDA reported available (on a machine without it), the backend's first tensor is made on CUDA, where
    this build of PyTorch refuses it: the name is honoured, not replaced by the CPU."""
    monkeypatch.setenv("CBLOSS_TEST_DEVICE", "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises((AssertionError, RuntimeError), match="CUDA"):
        _run()
