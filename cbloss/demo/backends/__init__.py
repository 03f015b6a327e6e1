"""Training backends of the demo: one module per framework, each with the same ``fit``.

``fit(layers, x, y, weights, *, loss, gamma, steps, lr, multi_label=None) -> layers`` trains the model given as
NumPy ``(W, b)`` layers on the full batch ``(x, y)`` for ``steps`` Adam steps (betas ``ADAM_BETAS``, eps
``ADAM_EPS``, no weight decay) with the cbloss loss ``loss`` (reduction ``"mean"``) and returns the trained layers
as NumPy float32. ``weights`` is None (unweighted), one ``(C,)`` vector for every step, or a ``(steps, C)`` table
whose row ``t`` weighs step ``t`` (0-based): a schedule such as ``cbloss.schedules.DeferredReweighting``
evaluated at every step (full batch: one step is one epoch). The table is an argument of the compiled training
loop of JAX and TensorFlow, indexed inside it, so new weights cost no retrace. ``y`` holds class indices, or
multi-hot ``(N, C)`` float32 targets with ``multi_label="class"`` or ``"sample"`` (docs/conventions.md §6.5).
Full batch, the same initialisation and the same optimiser make the runs of every backend the same up to
float32 rounding.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8

# name -> (module of this package, what it needs importable). The default backend is the first installed one
# of torch, jax, tensorflow (in this order), else numpy.
BACKENDS = {
    "numpy": ("numpy_backend", ()),
    "torch": ("torch_backend", ("torch", "cbloss.adapters.torch")),
    "jax": ("jax_backend", ("jax", "optax", "cbloss.adapters.jax")),
    "tensorflow": ("tensorflow_backend", ("tensorflow", "keras", "cbloss.adapters.tensorflow")),
}
DEFAULT_ORDER = ("torch", "jax", "tensorflow", "numpy")


def weights_at(weights, step: int):
    """The weights of step ``step`` (0-based): None, the ``(C,)`` vector itself, or row ``step`` of a
    ``(steps, C)`` table."""
    if weights is None or weights.ndim == 1:
        return weights
    return weights[step]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing
        return False


def missing(name: str) -> str | None:
    """Why backend ``name`` cannot run here (a one-line reason), or None."""
    if name not in BACKENDS:
        return f"unknown backend {name!r}; choose from {list(BACKENDS)}"
    for module in BACKENDS[name][1]:
        if not _installed(module):
            if module.startswith("cbloss"):
                return f"backend {name!r} needs {module}, which this version of cbloss does not have"
            return (
                f"backend {name!r} needs {module}, which is not installed (pip install 'class-balanced-loss[{name}]')"
            )
    return None


def default_backend() -> str:
    return next(name for name in DEFAULT_ORDER if missing(name) is None)


def load(name: str) -> ModuleType:
    reason = missing(name)
    if reason:
        raise RuntimeError(reason)
    return importlib.import_module(f"{__name__}.{BACKENDS[name][0]}")
