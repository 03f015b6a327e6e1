"""`cbloss demo --backend torch`: the same runs as the NumPy backend for the same seed, and end to end."""

import pytest

pytest.importorskip("torch", reason="torch is not installed")
pytest.importorskip("sklearn", reason="the demo extra (scikit-learn) is not installed")

from tests.demo_parity import check_demo_matches_numpy, check_fit_matches_numpy, check_multilabel_fit_matches_numpy


def test_fit_matches_the_numpy_backend():
    check_fit_matches_numpy("torch")


def test_multilabel_fit_matches_the_numpy_backend():
    check_multilabel_fit_matches_numpy("torch")


@pytest.mark.parametrize("task", ["single-label", "multi-label"])
def test_demo_runs_end_to_end_with_the_numpy_table(tmp_path, capsys, task):
    check_demo_matches_numpy("torch", tmp_path, capsys, task)
