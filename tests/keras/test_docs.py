"""docs/keras.md's quickstart runs as written on the running Keras backend, and a model it saves loads in a new
process only after ``import cbloss.adapters.keras``, failing with the error the page quotes otherwise. The
docstrings of the Keras loss and of the backend's adapter list the options they take."""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cbloss import options

from .conftest import BACKEND

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "keras.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE, re.S)


def test_keras_quickstart_runs_and_the_saved_model_loads_in_a_new_process(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    quickstart, load = BLOCKS[1], BLOCKS[2]
    assert "ClassBalancedLoss(samples_per_class" in quickstart and "load_model" in load
    namespace: dict = {}
    exec(compile(quickstart, "docs/keras.md quickstart", "exec"), namespace)
    assert namespace["samples_per_class"].tolist() == [815, 460, 289, 185, 96, 59, 38, 25, 12, 21]
    x, y = namespace["x_train"][:64], namespace["y_train"][:64]
    expected = namespace["model"].evaluate(x, y, verbose=0)
    without_import = "import keras\nkeras.saving.load_model('model.keras')\n"
    script = (
        f"try:\n    exec({without_import!r})\nexcept TypeError as error:\n    print('ERROR', error)\n"
        f"{load}\nimport numpy as np\nx, y = np.load('xy.npz').values()\n"
        "print('LOSS', type(model.loss).__name__, model.evaluate(x, y, verbose=0))\n"
    )
    np.savez("xy.npz", x=x, y=y)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True).stdout
    error = re.search(r"^ERROR (.*)$", out, re.M).group(1)
    quoted = re.search(r"fails with\n\n```\n(.*?) \.\.\.\n```", PAGE, re.S).group(1)
    assert f"TypeError: {error}".startswith(" ".join(quoted.split()))
    name, values = re.search(r"^LOSS (\S+) (.*)$", out, re.M).groups()
    assert name == "ClassBalancedLoss"
    np.testing.assert_allclose(ast.literal_eval(values), expected, rtol=1e-6)


ADAPTER_DOCUMENTED = {
    "torch": ["class_balanced_loss", "ClassBalancedLoss"],
    "jax": ["class_balanced_loss", "ClassBalancedLoss"],
    "tensorflow": ["class_balanced_loss"],
}


@pytest.mark.parametrize("adapter", ["keras", BACKEND])
def test_docstrings_list_every_option_they_take(adapter):
    """Every placeholder is filled; the Keras loss, whose reduction is Keras' own, lists every other option."""
    module = importlib.import_module(f"cbloss.adapters.{adapter}")
    expected = list(options.UNREDUCED_LOSS_OPTIONS if adapter == "keras" else options.LOSS_OPTIONS)
    for name in ADAPTER_DOCUMENTED.get(adapter, ["ClassBalancedLoss"]):
        doc = getattr(module, name).__doc__
        assert "options}" not in doc
        assert [option for option in options.LOSS_OPTIONS if f"    {option} (default" in doc] == expected
