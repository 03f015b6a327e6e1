"""`cbloss demo --backend jax`: the same runs as the NumPy backend for the same seed, end to end, and per-step
weights that reuse the jitted training loop."""

import pytest

pytest.importorskip("jax", reason="jax is not installed")
pytest.importorskip("sklearn", reason="the demo extra (scikit-learn) is not installed")

from tests.demo_parity import (
    check_demo_matches_numpy,
    check_fit_matches_numpy,
    check_multilabel_fit_matches_numpy,
    check_weight_schedule_reuses_the_trace,
)


def test_fit_matches_the_numpy_backend():
    check_fit_matches_numpy("jax")


def test_multilabel_fit_matches_the_numpy_backend():
    check_multilabel_fit_matches_numpy("jax")


@pytest.mark.parametrize("task", ["single-label", "multi-label"])
def test_demo_runs_end_to_end_with_the_numpy_table(tmp_path, capsys, task):
    check_demo_matches_numpy("jax", tmp_path, capsys, task)


def test_new_per_step_weights_do_not_recompile():
    check_weight_schedule_reuses_the_trace("jax", lambda trainer: trainer._train._cache_size())
