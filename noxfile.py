"""Sessions CI runs (the defaults): tests per backend and lint; `nox -s bench` runs the benchmarks.

Every install uses constraints.txt, the exact versions CI tests (torch is pinned by version, which resolves to
the local CPU wheel on CI's machines; an unpinned torch would pull a multi-GB CUDA build). Virtualenvs are
reused (`reuse_venv`) and pip's cache is kept, so a second run installs nothing new.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"
CONSTRAINTS = ("-c", "constraints.txt")
# What each backend's tests install besides the package's `test` extra. The framework sessions also run
# tests/<framework>/test_demo_<framework>.py (the demo extra) and tests/keras on that Keras backend (the keras
# extra; TensorFlow brings Keras itself): one virtualenv per framework, since installing one is most of a
# session's time.
BACKENDS = {
    "numpy": [".[test,demo]"],
    "torch": [".[test,torch,keras,demo]"],
    "jax": [".[test,jax,keras,demo]"],
    "tensorflow": [".[test,tensorflow,demo]"],
}
FRAMEWORK_TEST_DIRS = ["tests/torch", "tests/jax", "tests/tensorflow", "tests/keras"]
# Two pytest-xdist workers (the CI machine has two cores); JAX, which compiles every conformance case, gains most.
WORKERS = ["-n", "2"]


def _install(session: nox.Session, *requirements: str) -> None:
    session.install(*CONSTRAINTS, *requirements)


@nox.session(python=PYTHON)
@nox.parametrize("backend", list(BACKENDS))
def tests(session: nox.Session, backend: str) -> None:
    """The conformance suite on `backend` and that backend's own tests.

    tests(numpy) runs every framework-free test (core, oracle, properties, errors, CLI, demo) on numpy and
    array_api_strict; tests(<framework>) runs the conformance suite on that framework, tests/<framework>, and
    tests/keras with KERAS_BACKEND=<framework> (the Keras 3 loss and its callback on that backend).
    CBLOSS_TEST_BACKEND tells tests/conftest.py which conformance backends to run.
    """
    _install(session, *BACKENDS[backend])
    session.env["CBLOSS_TEST_BACKEND"] = backend
    pytest = ["pytest", "-q", "-p", "no:cacheprovider", *WORKERS]
    if backend == "numpy":
        ignores = [f"--ignore={d}" for d in FRAMEWORK_TEST_DIRS]
        session.run(*pytest, "tests", *ignores, *session.posargs)
        return
    session.run(*pytest, "tests/test_conformance.py", f"tests/{backend}", *session.posargs)
    session.run(*pytest, "tests/keras", *session.posargs, env={"KERAS_BACKEND": backend})


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    _install(session, "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy over the package. The frameworks are not installed here (each adapter is checked against them in
    development); their imports are treated as untyped."""
    _install(session, ".", "mypy")
    session.run("mypy", "cbloss", "--ignore-missing-imports")


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """The benchmark harness: `nox -s bench` (full) or `nox -s bench -- --quick` (CI's smoke run)."""
    _install(session, ".[torch,jax,tensorflow,demo]")
    session.run("python", "-m", "benchmarks", *session.posargs)
