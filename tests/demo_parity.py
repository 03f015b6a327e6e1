"""Shared checks of the demo's framework backends (used by tests/<framework>/test_demo_<framework>.py): the
same seed gives the same training run as the NumPy backend (which uses the core's analytic gradient and a
hand-written backprop), and a tiny ``cbloss demo`` runs end to end on the backend with the same table."""

from __future__ import annotations

import json

import numpy as np
import pytest

import cbloss
from cbloss.cli import main
from cbloss.demo import backends
from cbloss.demo.data import load_digits_arrays, long_tailed_split, make_pool
from cbloss.demo.experiment import single_threaded_blas
from cbloss.demo.models import forward, init_params

CASES = [  # (model, loss, gamma, beta or None)
    ("softmax", "softmax", None, None),
    ("softmax", "softmax", None, 1.0),
    ("mlp", "softmax", None, 0.99),
    ("mlp", "focal", 1.0, 0.999),
]


def check_fit_matches_numpy(name: str, steps: int = 25) -> None:
    reason = backends.missing(name)
    if reason:
        pytest.skip(reason)
    x, y = load_digits_arrays()
    split = long_tailed_split(make_pool(x, y, seed=0, test_per_class=50), n_max=120, imbalance=10)
    reference, trainer = backends.load("numpy"), backends.load(name)
    for model, loss, gamma, beta in CASES:
        weights = None if beta is None else cbloss.class_balanced_weights(split.counts, beta)
        init = init_params(model, x.shape[1], 10, seed=0)
        kwargs = dict(loss=loss, gamma=gamma, steps=steps, lr=0.05)
        with single_threaded_blas():
            expected = reference.fit(init, split.x_train, split.y_train, weights, **kwargs)
        got = trainer.fit(init, split.x_train, split.y_train, weights, **kwargs)
        what = f"{name} {model} {loss} beta={beta}"
        # Adam divides by sqrt(v): a gradient entry that is ~0 up to float32 rounding can take a full step either
        # way, so single entries may differ by ~lr * steps * 1e-3; the parameters as a whole and the model's
        # outputs agree closely.
        for (w, b), (w_ref, b_ref) in zip(got, expected, strict=True):
            assert w.dtype == np.float32 and w.shape == w_ref.shape and b.shape == b_ref.shape
            for p, p_ref in ((w, w_ref), (b, b_ref)):
                assert np.linalg.norm(p - p_ref) <= 2e-3 * np.linalg.norm(p_ref) + 1e-5, what
        logits, logits_ref = forward(got, split.x_train), forward(expected, split.x_train)
        np.testing.assert_allclose(logits, logits_ref, atol=5e-3 * np.abs(logits_ref).max(), err_msg=what)
        # the initial parameters are not modified in place
        np.testing.assert_array_equal(init[0][0], init_params(model, x.shape[1], 10, seed=0)[0][0])


def check_demo_matches_numpy(name: str, tmp_path, capsys) -> None:
    reason = backends.missing(name)
    if reason:
        pytest.skip(reason)
    records = {}
    for backend in ("numpy", name):
        json_path = tmp_path / f"{backend}.json"
        argv = ["demo", "--backend", backend, "--seeds", "1", "--steps", "30", "--imbalance", "10",
                "--no-plots", "--no-progress", "--out", str(tmp_path / backend), "--json", str(json_path)]  # fmt: skip
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "Conclusions" in out
        records[backend] = json.loads(json_path.read_text())
    assert records[name]["config"]["backend"] == name
    one_sample = 1.0 / (10 * records[name]["config"]["test_per_class"])
    runs, reference = records[name]["runs"], records["numpy"]["runs"]
    assert len(runs) == len(reference) > 0
    for run, ref in zip(runs, reference, strict=True):
        assert (run["model"], run["method"], run["seed"]) == (ref["model"], ref["method"], ref["seed"])
        assert abs(run["error"] - ref["error"]) <= one_sample + 1e-12, (run["model"], run["method"])
