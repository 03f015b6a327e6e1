"""The layout docs/architecture.md promises, checked on the source: adapters stay thin bindings, and the core
imports no framework."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cbloss"
BINDINGS = ["torch.py", "jax.py", "tensorflow.py", "keras.py"]
MAX_CODE_LINES = 300


def code_lines(source: str) -> int:
    """Lines that hold code: not blank, not only a comment, not part of a docstring."""
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    skipped = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in skipped:
            lines.update(n for n in range(token.start[0], token.end[0] + 1) if n not in docstrings)
    return len(lines)


def test_code_lines_counts_code_only():
    source = (
        '"""Module doc\n\nmore."""\n\n# a comment\nx = 1  # trailing\n\n\n'
        'def f():\n    """Doc."""\n    return (\n        x\n    )\n'
    )
    assert code_lines(source) == 5  # x = 1; def f(); return (; x; )


@pytest.mark.parametrize("name", BINDINGS)
def test_each_adapter_binding_is_under_300_lines_of_code(name):
    """docs/architecture.md: an adapter converts, validates and registers the core's gradient; its framework
    kernels (``_torch_kernels.py``, ``_jax_kernels.py``) and TensorFlow's Array-API namespace
    (``_tf_namespace.py``) live apart."""
    count = code_lines((PACKAGE / "adapters" / name).read_text())
    assert count <= MAX_CODE_LINES, f"adapters/{name}: {count} lines of code, more than {MAX_CODE_LINES}"


def test_the_core_imports_no_framework():
    code = (
        "import sys, cbloss, cbloss.engine, cbloss.functional, cbloss.module, cbloss.schedules\n"
        "print(sorted(m for m in ('torch', 'jax', 'tensorflow', 'keras') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
