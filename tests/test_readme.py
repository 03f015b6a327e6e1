"""The README's NumPy quickstart runs as written, and its two set-up commands are the ones CI uses."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_numpy_quickstart_runs():
    block = re.search(r"## Quickstart \(NumPy.*?```python\n(.*?)```", README, re.S).group(1)
    namespace: dict = {}
    exec(compile(block, "README.md quickstart", "exec"), namespace)
    assert np.isfinite(namespace["loss"])
    assert namespace["grad"].shape == (32, 10)
    np.testing.assert_allclose(namespace["w"].sum(), 10.0, rtol=1e-14)


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```bash\n(.*?)\n```", README.split("## The math")[0], re.S)
    assert len(commands) == 2, "README keeps exactly two set-up commands"
    ci = (ROOT / ".ci" / "run").read_text()
    for step in commands[1].split("&&"):
        assert step.strip() in ci, f"{step.strip()!r} of the README's test command is not in .ci/run"
