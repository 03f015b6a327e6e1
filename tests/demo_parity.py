"""Shared checks of the demo's framework backends (used by tests/<framework>/test_demo_<framework>.py): the
same seed gives the same training run as the NumPy backend (which uses the core's analytic gradient and a
hand-written backprop), also with per-step weights (deferred re-weighting) and multi-hot targets, a tiny
``cbloss demo`` runs end to end on the backend with the same table (both tasks), and new per-step weights of the
same shape reuse the compiled training loop."""

from __future__ import annotations

import json

import numpy as np
import pytest

import cbloss
from cbloss.cli import main
from cbloss.demo import backends
from cbloss.demo.data import load_digits_arrays, long_tailed_split, make_pool
from cbloss.demo.experiment import single_threaded_blas, weights_per_step
from cbloss.demo.models import forward, init_params
from cbloss.demo.multilabel import load_multilabel_pool, long_tailed_multilabel_split
from cbloss.schedules import DeferredReweighting

CASES = [  # (model, loss, gamma, beta or None or "drw")
    ("softmax", "softmax", None, None),
    ("softmax", "softmax", None, 1.0),
    ("mlp", "softmax", None, 0.99),
    ("mlp", "focal", 1.0, 0.999),
    # CE for 18 steps, then CB weights: the backend must take row t of the table at step t
    ("softmax", "softmax", None, "drw"),
]
MULTI_LABEL_CASES = [  # (model, loss, gamma, beta or None, multi_label)
    ("linear", "sigmoid", None, None, "class"),
    ("linear", "focal", 2.0, 0.99, "class"),
    ("mlp", "sigmoid", None, 0.99, "sample"),
    ("mlp", "focal", 2.0, 0.99, "sample"),
]


def _weights(beta, counts: np.ndarray, steps: int):
    if beta == "drw":
        return weights_per_step(DeferredReweighting(counts, 0.9999, start=steps - 7), steps)
    return None if beta is None else cbloss.class_balanced_weights(counts, beta)


def _assert_same_fit(name: str, trainer, reference, init, x, y, weights, what: str, **kwargs) -> None:
    with single_threaded_blas():
        expected = reference.fit(init, x, y, weights, **kwargs)
    got = trainer.fit(init, x, y, weights, **kwargs)
    # Adam divides by sqrt(v): a gradient entry that is ~0 up to float32 rounding can take a full step either
    # way, so single entries may differ by ~lr * steps * 1e-3; the parameters as a whole and the model's
    # outputs agree closely.
    for (w, b), (w_ref, b_ref) in zip(got, expected, strict=True):
        assert w.dtype == np.float32 and w.shape == w_ref.shape and b.shape == b_ref.shape
        for p, p_ref in ((w, w_ref), (b, b_ref)):
            assert np.linalg.norm(p - p_ref) <= 2e-3 * np.linalg.norm(p_ref) + 1e-5, what
    logits, logits_ref = forward(got, x), forward(expected, x)
    np.testing.assert_allclose(logits, logits_ref, atol=5e-3 * np.abs(logits_ref).max(), err_msg=what)


def check_fit_matches_numpy(name: str, steps: int = 25) -> None:
    reason = backends.missing(name)
    if reason:
        pytest.skip(reason)
    x, y = load_digits_arrays()
    split = long_tailed_split(make_pool(x, y, seed=0, test_per_class=50), n_max=120, imbalance=10)
    reference, trainer = backends.load("numpy"), backends.load(name)
    for model, loss, gamma, beta in CASES:
        weights = _weights(beta, split.counts, steps)
        init = init_params(model, x.shape[1], 10, seed=0)
        what = f"{name} {model} {loss} beta={beta}"
        _assert_same_fit(name, trainer, reference, init, split.x_train, split.y_train, weights, what,
                         loss=loss, gamma=gamma, steps=steps, lr=0.05)  # fmt: skip
        # the initial parameters are not modified in place
        np.testing.assert_array_equal(init[0][0], init_params(model, x.shape[1], 10, seed=0)[0][0])


def check_multilabel_fit_matches_numpy(name: str, steps: int = 25) -> None:
    reason = backends.missing(name)
    if reason:
        pytest.skip(reason)
    x, y = load_multilabel_pool()
    split = long_tailed_multilabel_split(x, y, seed=0, n_test=1000, n_max=200, imbalance=50)
    reference, trainer = backends.load("numpy"), backends.load(name)
    for model, loss, gamma, beta, mode in MULTI_LABEL_CASES:
        weights = None if beta is None else cbloss.class_balanced_weights(split.counts, beta)
        init = init_params(model, x.shape[1], y.shape[1], seed=0)
        _assert_same_fit(name, trainer, reference, init, split.x_train, split.y_train, weights,
                         f"{name} {model} {loss} beta={beta} {mode}", loss=loss, gamma=gamma, steps=steps, lr=0.05,
                         multi_label=mode)  # fmt: skip


def check_demo_matches_numpy(name: str, tmp_path, capsys, task: str = "single-label") -> None:
    reason = backends.missing(name)
    if reason:
        pytest.skip(reason)
    records = {}
    for backend in ("numpy", name):
        json_path = tmp_path / f"{backend}.json"
        argv = ["demo", "--task", task, "--backend", backend, "--seeds", "1", "--steps", "30", "--no-plots",
                "--no-progress", "--out", str(tmp_path / backend), "--json", str(json_path)]  # fmt: skip
        if task == "single-label":
            argv += ["--imbalance", "10"]
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "Conclusions" in out
        records[backend] = json.loads(json_path.read_text())
    assert records[name]["config"]["backend"] == name
    runs, reference = records[name]["runs"], records["numpy"]["runs"]
    assert len(runs) == len(reference) > 0
    if task == "single-label":
        assert any(r["method"].startswith("drw") for r in runs)
        one_sample = 1.0 / (10 * records[name]["config"]["test_per_class"])
        for run, ref in zip(runs, reference, strict=True):
            assert (run["model"], run["method"], run["seed"]) == (ref["model"], ref["method"], ref["seed"])
            assert abs(run["error"] - ref["error"]) <= one_sample + 1e-12, (run["model"], run["method"])
    else:
        for run, ref in zip(runs, reference, strict=True):
            assert (run["model"], run["method"], run["seed"]) == (ref["model"], ref["method"], ref["seed"])
            assert run["counts_by_rank"] == ref["counts_by_rank"]
            # the same model up to float32 rounding ranks the test samples the same, up to near-ties
            np.testing.assert_allclose(run["ap_by_rank"], ref["ap_by_rank"], atol=5e-3, err_msg=run["method"])


def check_weight_schedule_reuses_the_trace(name: str, trace_count) -> None:
    """Three DRW tables (different switch steps) of one shape: one trace. ``trace_count()`` reads the backend's."""
    reason = backends.missing(name)
    if reason:
        pytest.skip(reason)
    trainer = backends.load(name)
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 64), dtype=np.float32), rng.integers(0, 10, 40)
    init, counts = init_params("softmax", 64, 10, seed=0), np.bincount(y, minlength=10) + 1
    counts_seen = []
    for start in (3, 5, 8):
        table = weights_per_step(DeferredReweighting(counts, 0.9999, start=start), 10)
        trainer.fit(init, x, y, table, loss="softmax", gamma=None, steps=10, lr=0.05)
        counts_seen.append(trace_count(trainer))
    assert counts_seen[0] >= 1
    assert counts_seen == [counts_seen[0]] * 3, counts_seen
