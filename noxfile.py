"""Sessions CI runs (the defaults): tests per backend and lint; `nox -s bench` runs the benchmarks.

Every install uses constraints.txt, the exact versions CI tests (torch is pinned to the local CPU wheel;
an unpinned torch would pull a multi-GB CUDA build). Virtualenvs are reused (`reuse_venv`) and pip's cache
is kept, so a second run installs nothing new.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "keras"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"
CONSTRAINTS = ("-c", "constraints.txt")
# What each backend's tests install besides the package's `test` extra.
BACKENDS = {
    "numpy": [".[test,demo]"],
    # the framework sessions also run tests/<framework>/test_demo_<framework>.py, which needs the demo extra
    "torch": [".[test,torch,demo]"],
    "jax": [".[test,jax,demo]"],
    "tensorflow": [".[test,tensorflow,demo]"],
}
FRAMEWORK_TEST_DIRS = ["tests/torch", "tests/jax", "tests/tensorflow", "tests/keras"]
# JAX compiles every conformance case, which makes its session the longest by far: two pytest-xdist workers
# (the CI machine has two cores) halve it. The other sessions are short enough to run in one process.
WORKERS = {"jax": ["-n", "2"]}
# The Keras 3 loss runs on each Keras backend (KERAS_BACKEND): what each backend's run installs.
KERAS_BACKENDS = {
    "tensorflow": [".[test,tensorflow]"],
    "jax": [".[test,jax,keras]"],
    "torch": [".[test,torch,keras]"],
}


def _install(session: nox.Session, *requirements: str) -> None:
    session.install(*CONSTRAINTS, *requirements)


@nox.session(python=PYTHON)
@nox.parametrize("backend", list(BACKENDS))
def tests(session: nox.Session, backend: str) -> None:
    """The conformance suite on `backend` and that backend's own tests.

    tests(numpy) runs every framework-free test (core, oracle, properties, errors, CLI, demo) on numpy and
    array_api_strict; tests(<framework>) runs the conformance suite on that framework and tests/<framework>.
    CBLOSS_TEST_BACKEND tells tests/conftest.py which conformance backends to run.
    """
    _install(session, *BACKENDS[backend])
    session.env["CBLOSS_TEST_BACKEND"] = backend
    if backend == "numpy":
        ignores = [f"--ignore={d}" for d in FRAMEWORK_TEST_DIRS]
        paths = ["tests", *ignores]
    else:
        paths = ["tests/test_conformance.py", f"tests/{backend}"]
    session.run("pytest", "-q", "-p", "no:cacheprovider", *WORKERS.get(backend, []), *paths, *session.posargs)


@nox.session(python=PYTHON)
@nox.parametrize("backend", list(KERAS_BACKENDS))
def keras(session: nox.Session, backend: str) -> None:
    """tests/keras under KERAS_BACKEND=`backend`: the Keras loss and its callback on that backend."""
    _install(session, *KERAS_BACKENDS[backend])
    session.env["KERAS_BACKEND"] = backend
    session.run("pytest", "-q", "-p", "no:cacheprovider", "tests/keras", *session.posargs)


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
    session.env.setdefault("MALLOC_MMAP_THRESHOLD_", "33554432")
    session.env.setdefault("MALLOC_TRIM_THRESHOLD_", "1073741824")
    session.run("python", "-m", "benchmarks", *session.posargs)
