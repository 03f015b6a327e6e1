"""The experiment: every (model, imbalance factor, seed, method) run, with paired runs across methods.

For one seed, every method sees the same balanced test set, the same long-tailed training split and the same
initial parameters, so the difference of two methods' errors is a paired difference (its spread over seeds is
what the conclusions use). Class weights come from the public ``cbloss.class_balanced_weights``; deferred
re-weighting (DRW) from ``cbloss.schedules.DeferredReweighting``, evaluated at every step (full batch: a step is
an epoch) into a ``(steps, C)`` table that the backend indexes step by step.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

import cbloss
from cbloss.schedules import DeferredReweighting

from . import backends
from .data import head_tail_classes, load_digits_arrays, long_tailed_split, make_pool
from .models import init_params, predict

if TYPE_CHECKING:
    from cbloss.options import Normalize

# Normalisation of the class weights: the paper's "classes" (sum_i w_i = C). With Adam the loss scale hardly
# matters, and there is no weight decay to interact with it; `--normalize` changes it.
DEFAULT_NORMALIZE = "classes"
CB_BETAS = (0.9, 0.99, 0.999, 0.9999)
FOCAL_GAMMAS = (0.5, 1.0, 2.0)
# The beta of the class-balanced focal runs, fixed before looking at any result: the grid value whose effective
# numbers on these counts (n <= 120) sit between the extremes (E_120 = 70 for 0.99; 0.9 saturates at 10, and
# 0.999/0.9999 are within 6% / 1% of n, i.e. close to inverse frequency).
DEFAULT_FOCAL_BETA = 0.99
# Deferred re-weighting (Cao et al. 2019): plain CE first, class-balanced weights for the last quarter of the
# steps (150 of 200; 75 of 100 with --quick), with Cao et al.'s beta and with the best CB softmax beta.
DRW_BETA = 0.9999
DRW_LAST_FRACTION = 0.25


@dataclass(frozen=True)
class Method:
    key: str  # stable identifier (JSON)
    label: str  # for the table
    loss: str = "softmax"
    beta: float | None = None  # None: unweighted
    gamma: float | None = None
    # "ce", "inverse_frequency", "cb" or "drw" ("plain" for the multi-label task's unweighted losses); a "drw"
    # method with beta None takes the setting's best CB softmax beta (picked on the test set, after the other runs)
    kind: str = "cb"
    multi_label: str | None = None  # the multi-label task's weighting: "class" or "sample"

    def weights(self, counts: np.ndarray, normalize: str | None) -> np.ndarray | None:
        if self.beta is None:
            return None
        return cbloss.class_balanced_weights(counts, self.beta, normalize=normalize)


def drw_start(steps: int, last_fraction: float = DRW_LAST_FRACTION) -> int:
    """The first step (0-based) with class-balanced weights: the last ``last_fraction`` of ``steps`` (at least
    one step) are weighted."""
    return steps - max(1, round(steps * last_fraction))


def weights_per_step(schedule, steps: int) -> np.ndarray:
    """The ``(steps, C)`` float64 table whose row ``t`` is ``schedule(t)``: what a demo backend uses at step ``t``."""
    return np.stack([schedule(t) for t in range(steps)])


def default_methods(betas=CB_BETAS, gammas=FOCAL_GAMMAS, focal_beta: float = DEFAULT_FOCAL_BETA) -> list[Method]:
    methods = [
        Method("ce", "plain softmax CE (before)", kind="ce"),
        Method("inverse_frequency", "inverse frequency (beta=1)", beta=1.0, kind="inverse_frequency"),
    ]
    methods += [Method(f"cb_softmax_beta{b:g}", f"CB softmax beta={b:g}", beta=b) for b in betas]
    methods += [
        Method(
            f"cb_focal_gamma{g:g}_beta{focal_beta:g}",
            f"CB focal gamma={g:g} beta={focal_beta:g}",
            "focal",
            focal_beta,
            g,
        )
        for g in gammas
    ]
    methods += [
        Method(f"drw_beta{DRW_BETA:g}", f"DRW beta={DRW_BETA:g} (CE, then CB softmax)", beta=DRW_BETA, kind="drw"),
        Method("drw_best", "DRW, best CB softmax beta", kind="drw"),
    ]
    return methods


@dataclass
class DemoConfig:
    backend: str = "numpy"
    models: tuple[str, ...] = ("softmax", "mlp")
    imbalances: tuple[float, ...] = (10.0, 20.0, 50.0)
    seeds: int = 5
    # lr 0.05 with 200 full-batch steps: within about half a point of the error after 1500 steps on every
    # setting (measured), so "before" is not an under-trained straw man.
    steps: int = 200
    lr: float = 0.05
    n_max: int = 120
    test_per_class: int = 50
    normalize: str | None = DEFAULT_NORMALIZE
    methods: list[Method] = field(default_factory=default_methods)
    drw_last_fraction: float = DRW_LAST_FRACTION

    @classmethod
    def quick(cls, **overrides) -> DemoConfig:
        """``--quick``: 3 seeds, 100 steps, imbalance 10 and 50, five methods (CE, inverse frequency, CB softmax
        beta=0.99, CB focal gamma=1, DRW with the best CB softmax beta: here 0.99, the only candidate)."""
        methods = [m for m in default_methods() if m.key in _QUICK_METHODS]
        base: dict[str, Any] = {"imbalances": (10.0, 50.0), "seeds": 3, "steps": 100, "methods": methods}
        base.update(overrides)
        return cls(**base)

    def as_dict(self) -> dict:
        return {
            "task": "single-label",
            "backend": self.backend,
            "models": list(self.models),
            "imbalance_factors": list(self.imbalances),
            "seeds": list(range(self.seeds)),
            "steps": self.steps,
            "optimizer": {"name": "adam", "lr": self.lr, "betas": list(backends.ADAM_BETAS), "eps": backends.ADAM_EPS},
            "batch": "full",
            "n_max": self.n_max,
            "test_per_class": self.test_per_class,
            "normalize": self.normalize,
            "reduction": "mean",
            "methods": [m.__dict__ for m in self.methods],
            "drw": {"start_step": drw_start(self.steps, self.drw_last_fraction), "schedule": "DeferredReweighting"},
        }


_QUICK_METHODS = {"ce", "inverse_frequency", "cb_softmax_beta0.99", "cb_focal_gamma1_beta0.99", "drw_best"}


class Progress:
    """A plain-text progress bar on stderr (redrawn in place on a terminal, a line per 10% otherwise)."""

    def __init__(self, total: int, stream=None, width: int = 28):
        self.total, self.width, self.done = max(total, 1), width, 0
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self._last_decile = -1

    def update(self, label: str = "") -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        filled = round(self.width * self.done / self.total)
        line = (
            f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} runs "
            f"{elapsed:5.1f}s elapsed, ~{eta:4.0f}s left  {label}"
        )
        if self.tty:
            self.stream.write("\r" + line[:110].ljust(110))
            if self.done == self.total:
                self.stream.write("\n")
        else:
            decile = 10 * self.done // self.total
            if decile != self._last_decile:
                self._last_decile = decile
                self.stream.write(line + "\n")
        self.stream.flush()


def per_class_accuracy(pred: np.ndarray, y: np.ndarray, num_classes: int) -> np.ndarray:
    return np.array([np.mean(pred[y == c] == c) for c in range(num_classes)])


@contextlib.contextmanager
def single_threaded_blas():
    """BLAS on one thread while the demo trains: its matrices are tiny, and OpenBLAS threads that spin on a
    busy machine made the NumPy runs up to 10x slower. Uses threadpoolctl (a scikit-learn dependency) when present."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def run_experiment(config: DemoConfig, progress: bool = True) -> dict:
    """Run every configuration; returns the raw per-run records (see ``report.summarize``)."""
    with single_threaded_blas():
        return _run(config, progress)


def best_cb_softmax_betas(runs: list[dict], methods: list[Method]) -> dict:
    """``{(model, imbalance): beta}``: the CB softmax beta with the lowest mean test error over seeds (the test set
    is the only held-out data the demo has, so this choice favours it, like every "best" in the report)."""
    betas = {m.key: m.beta for m in methods if m.kind == "cb" and m.loss == "softmax"}
    errors: dict = {}
    for r in runs:
        if r["method"] in betas:
            errors.setdefault((r["model"], r["imbalance"]), {}).setdefault(r["method"], []).append(r["error"])
    return {k: betas[min(by, key=lambda key: np.mean(by[key]))] for k, by in errors.items()}


def _run(config: DemoConfig, progress: bool) -> dict:
    trainer = backends.load(config.backend)
    x, y = load_digits_arrays()
    num_classes = int(y.max()) + 1
    runs: list[dict] = []
    total = len(config.models) * len(config.imbalances) * config.seeds * len(config.methods)
    bar = Progress(total) if progress else None
    deferred_best = [m for m in config.methods if m.kind == "drw" and m.beta is None]
    if deferred_best and not any(m.kind == "cb" and m.loss == "softmax" for m in config.methods):
        raise ValueError("a DRW method with the best CB softmax beta needs CB softmax methods to pick it from")
    start = drw_start(config.steps, config.drw_last_fraction)
    t0 = time.perf_counter()
    # The DRW runs with the best CB softmax beta come second: that beta is picked from the first runs.
    for methods in ([m for m in config.methods if m not in deferred_best], deferred_best):
        best = best_cb_softmax_betas(runs, config.methods) if methods is deferred_best else {}
        for seed in range(config.seeds):
            pool = make_pool(x, y, seed, config.test_per_class)
            for imbalance in config.imbalances:
                split = long_tailed_split(pool, config.n_max, imbalance)
                head, tail = head_tail_classes(split.class_order)
                for model in config.models:
                    init = init_params(model, x.shape[1], num_classes, seed)
                    for method in methods:
                        beta = best[(model, imbalance)] if method in deferred_best else method.beta
                        weights = per_step = None
                        if beta is not None:
                            normalize = cast("Normalize", config.normalize)
                            weights = per_step = cbloss.class_balanced_weights(split.counts, beta, normalize=normalize)
                            if method.kind == "drw":
                                schedule = DeferredReweighting(split.counts, beta, start=start, normalize=normalize)
                                per_step = weights_per_step(schedule, config.steps)
                        layers = trainer.fit(
                            init, split.x_train, split.y_train, per_step,
                            loss=method.loss, gamma=method.gamma, steps=config.steps, lr=config.lr,
                        )  # fmt: skip
                        pred = predict(layers, pool.x_test)
                        acc = per_class_accuracy(pred, pool.y_test, num_classes)
                        runs.append(
                            {
                                "model": model,
                                "imbalance": imbalance,
                                "seed": seed,
                                "method": method.key,
                                "beta": beta,
                                "error": float(np.mean(pred != pool.y_test)),
                                "head_accuracy": float(acc[head].mean()),
                                "tail_accuracy": float(acc[tail].mean()),
                                # by frequency rank: entry i is the class with the i-th largest training count
                                "accuracy_by_rank": acc[split.class_order].tolist(),
                                "counts_by_rank": split.counts[split.class_order].tolist(),
                                "class_order": split.class_order.tolist(),
                                # the class-balanced weights (for DRW: those of the steps from drw_start_step on)
                                "weights_by_rank": None if weights is None else weights[split.class_order].tolist(),
                                "drw_start_step": start if method.kind == "drw" else None,
                            }
                        )
                        if bar:
                            bar.update(f"{model} IF={imbalance:g} seed={seed} {method.key}")
    return {"config": config.as_dict(), "runs": runs, "train_seconds": time.perf_counter() - t0}
