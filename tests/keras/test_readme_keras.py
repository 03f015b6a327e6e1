"""README's Keras fit with ReweightingCallback runs as written on the running backend and ends with the
class-balanced weights in the loss."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_keras_fit_with_the_callback_runs():
    block = re.search(r"### Keras \(any backend\)\n\n```python\n(.*?)```", README, re.S).group(1)
    namespace: dict = {}
    exec(compile(block, "README.md Keras fit", "exec"), namespace)
    loss, drw = namespace["model"].loss, namespace["drw"]
    np.testing.assert_allclose(loss.class_weights, drw(7), rtol=1e-7)
    assert not np.allclose(drw(0), drw(7))
