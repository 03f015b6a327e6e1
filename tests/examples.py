"""Docstring examples run as a reader pastes them: each docstring's examples in a fresh namespace, so that an
example works with the names it imports itself, never with the module's own (as ``doctest.testmod`` would let
it)."""

from __future__ import annotations

import doctest
import io
from types import ModuleType


def check_examples_run_as_pasted(module: ModuleType, entry_points: tuple[str, ...] = ()) -> None:
    """Every docstring example defined in ``module`` passes in a fresh namespace, and each name in
    ``entry_points`` (objects of ``module``) has an example of its own."""
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report = io.StringIO()
    with_examples = set()
    for test in doctest.DocTestFinder().find(module, globs={}):
        if test.examples:
            with_examples.add(test.name.removeprefix(f"{module.__name__}."))
            runner.run(test, out=report.write)
    assert runner.failures == 0, report.getvalue()
    missing = [name for name in entry_points if name not in with_examples]
    assert not missing, f"{module.__name__}: no docstring example for {missing}"
