"""README's PyTorch deferred re-weighting loop runs as written and ends with the class-balanced weights."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_drw_loop_runs():
    block = re.search(r"### PyTorch\n\n```python\n(.*?)```", README, re.S).group(1)
    namespace: dict = {}
    exec(compile(block, "README.md PyTorch DRW loop", "exec"), namespace)
    criterion, drw = namespace["criterion"], namespace["drw"]
    assert namespace["samples_per_class"].sum() == 2000
    np.testing.assert_allclose(criterion.weight.double().numpy(), drw(namespace["epochs"] - 1), rtol=1e-6)
    assert not np.allclose(drw(0), drw(namespace["epochs"] - 1))
    assert np.isfinite(float(namespace["loss"]))
