"""`cbloss demo --backend tensorflow`: the same runs as the NumPy backend for the same seed, end to end, and
per-step weights that reuse the traced training loop."""

import pytest

pytest.importorskip("tensorflow", reason="tensorflow is not installed")
pytest.importorskip("sklearn", reason="the demo extra (scikit-learn) is not installed")

from tests.demo_parity import (
    check_demo_matches_numpy,
    check_fit_matches_numpy,
    check_multilabel_fit_matches_numpy,
    check_weight_schedule_reuses_the_trace,
)


def test_fit_matches_the_numpy_backend():
    check_fit_matches_numpy("tensorflow")


def test_multilabel_fit_matches_the_numpy_backend():
    check_multilabel_fit_matches_numpy("tensorflow")


@pytest.mark.parametrize("task", ["single-label", "multi-label"])
def test_demo_runs_end_to_end_with_the_numpy_table(tmp_path, capsys, task):
    check_demo_matches_numpy("tensorflow", tmp_path, capsys, task)


def _tracing_count(trainer) -> int:
    return sum(train.experimental_get_tracing_count() for train in trainer._TRAINERS.values())


def test_new_per_step_weights_do_not_retrace():
    check_weight_schedule_reuses_the_trace("tensorflow", _tracing_count)
