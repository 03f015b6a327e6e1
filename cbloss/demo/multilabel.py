"""``cbloss demo --task multi-label``: class-balanced sigmoid and focal losses on long-tailed multi-label data.

Data: one fixed pool from scikit-learn's multi-label generator ``make_multilabel_classification`` (no download):
5000 documents of about 100 words from a 64-word vocabulary, each word drawn from the mixture of the word
distributions of the document's labels; 10 classes, about 1.6 labels per document. Features are the term
frequencies scaled to a mean of ``FEATURE_MEAN`` per feature, the bundled digits' mean pixel value, so that the
single-label demo's Adam learning rate suits them too. For each seed:

- a test set of 1000 random documents, held out with their natural label distribution (every class has about 100
  or more positives there; AP is computed per class, so the test set needs no balancing);
- a long-tailed training set from the other 4000, built the way long-tailed multi-label benchmarks are built: a
  random class order, a target number of positives ``n_i = floor(n_max * mu**(-i / (C - 1)))`` for the class of
  rank ``i`` (``data.long_tailed_counts``), and the classes filled from the smallest target to the largest with
  random documents whose every label still has room. A document brings all its labels, so a class may end below
  its target; the realised counts are the ones used for the weights and define head and tail.

Models and training as in the single-label demo (the one-layer ``linear`` model, a logistic regression per class,
and the MLP; full-batch Adam). Methods: plain BCE (``loss="sigmoid"``, unweighted), the unweighted focal loss,
inverse-frequency weights and class-balanced weights (``beta`` fixed beforehand), the latter with
``multi_label="class"`` and ``"sample"`` (docs/conventions.md §6.5), each with the sigmoid and the focal loss.
Reported: macro mAP (``sklearn.metrics.average_precision_score`` per class, then the mean), head- and tail-class
AP, macro F1 at the threshold 0.5, and paired differences to plain BCE over seeds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import backends
from .data import head_tail_classes, long_tailed_counts
from .experiment import Method, Progress, single_threaded_blas
from .models import forward, init_params
from .report import _key, _pm, _stats, _stats_columns

POOL_SIZE = 5000
N_FEATURES = 64
N_CLASSES = 10
WORDS_PER_DOCUMENT = 100
LABELS_PER_DOCUMENT = 1  # the generator's Poisson mean, before it rejects unlabelled documents: 1.6 on average
# The digits' pixels / 16 have mean 0.30. With features 3x larger (mean 1) and lr 0.05, most of the MLP's ReLU
# units died in the first steps with the focal loss (75-83% against 62-69%), and its unweighted focal mAP fell
# 6-12 points below the sigmoid's (measured on two seeds while designing the demo).
FEATURE_MEAN = 0.3
# beta and gamma fixed before looking at any result: on these counts (n <= 200) 0.99 is the grid value whose
# effective numbers sit between the extremes (E_200 = 87; 0.999 and 0.9999 are within 10% and 1% of n, nearly
# inverse frequency), and gamma = 2 is the focal loss's usual default (and cbloss's).
DEFAULT_BETA = 0.99
DEFAULT_GAMMA = 2.0
# A paired mAP difference of at most this (in AP points) is never called clear, whatever its spread.
MIN_CLEAR_AP = 0.2


# ------------------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------------------
def load_multilabel_pool(
    n_samples: int = POOL_SIZE, n_features: int = N_FEATURES, n_classes: int = N_CLASSES
) -> tuple[np.ndarray, np.ndarray]:
    """The fixed pool (``random_state=0``): float32 features and float32 0/1 multi-hot targets ``(N, C)``."""
    try:
        from sklearn.datasets import make_multilabel_classification
    except ImportError as error:  # pragma: no cover - the demo extra installs it
        raise RuntimeError(
            "the demo needs scikit-learn (its multi-label generator): pip install 'class-balanced-loss[demo]'"
        ) from error
    counts, y = make_multilabel_classification(
        n_samples=n_samples, n_features=n_features, n_classes=n_classes, n_labels=LABELS_PER_DOCUMENT,
        length=WORDS_PER_DOCUMENT, allow_unlabeled=False, random_state=0,
    )  # fmt: skip
    x = counts / counts.sum(axis=1, keepdims=True) * (n_features * FEATURE_MEAN)
    return x.astype(np.float32), y.astype(np.float32)


@dataclass(frozen=True)
class MultiLabelSplit:
    x_train: np.ndarray  # float32
    y_train: np.ndarray  # float32 multi-hot (n_train, C)
    x_test: np.ndarray
    y_test: np.ndarray
    counts: np.ndarray  # (C,) training positives per class (by class index)
    targets: np.ndarray  # (C,) the long-tailed targets the counts were filled towards
    class_order: np.ndarray  # classes from the most to the least frequent (realised counts)
    train_index: np.ndarray  # rows of the pool
    test_index: np.ndarray


def long_tailed_multilabel_split(
    x: np.ndarray, y: np.ndarray, seed: int, n_test: int, n_max: int, imbalance: float
) -> MultiLabelSplit:
    """Hold out ``n_test`` random samples; fill a long-tailed training set from the rest (see the module doc)."""
    rng = np.random.default_rng([seed, 2])
    num_classes = y.shape[1]
    order = rng.permutation(len(x))
    test, candidates = order[:n_test], order[n_test:]
    targets = np.zeros(num_classes, dtype=np.int64)
    targets[rng.permutation(num_classes)] = long_tailed_counts(n_max, imbalance, num_classes)
    positive = y[candidates] > 0
    counts = np.zeros(num_classes, dtype=np.int64)
    taken = np.zeros(len(candidates), dtype=bool)
    for c in np.argsort(targets, kind="stable"):  # the smallest target first
        for j in np.flatnonzero(positive[:, c] & ~taken):
            if counts[c] >= targets[c]:
                break
            labels = positive[j]
            if np.all(counts[labels] < targets[labels]):
                taken[j] = True
                counts[labels] += 1
    if np.any(counts == 0):
        raise ValueError(f"n_max={n_max}, imbalance={imbalance:g}: a class has no training positive")
    train = candidates[taken]
    class_order = np.lexsort((-targets, -counts))  # by realised count, ties by target
    return MultiLabelSplit(x[train], y[train], x[test], y[test], counts, targets, class_order, train, test)


# ------------------------------------------------------------------------------------------------------------
# Methods and configuration
# ------------------------------------------------------------------------------------------------------------
def multilabel_methods(beta: float = DEFAULT_BETA, gamma: float = DEFAULT_GAMMA) -> list[Method]:
    """Plain BCE and focal, inverse frequency and class-balanced weights, each weighting "class" and "sample"."""
    methods = [
        Method("bce", "plain BCE (before)", "sigmoid", kind="plain", multi_label="class"),
        Method("focal", f"plain focal gamma={gamma:g}", "focal", gamma=gamma, kind="plain", multi_label="class"),
    ]
    for mode in ("class", "sample"):
        label = f"inverse frequency ({mode})"
        methods.append(Method(f"inverse_frequency_{mode}", label, "sigmoid", 1.0, kind="inverse_frequency",
                              multi_label=mode))  # fmt: skip
    for mode in ("class", "sample"):
        label = f"CB sigmoid beta={beta:g} ({mode})"
        methods.append(Method(f"cb_{mode}_sigmoid", label, "sigmoid", beta, kind="cb", multi_label=mode))
        label = f"CB focal gamma={gamma:g} beta={beta:g} ({mode})"
        methods.append(Method(f"cb_{mode}_focal", label, "focal", beta, gamma, kind="cb", multi_label=mode))
    return methods


@dataclass
class MultiLabelConfig:
    backend: str = "numpy"
    models: tuple[str, ...] = ("linear", "mlp")
    imbalances: tuple[float, ...] = (50.0,)
    seeds: int = 5
    steps: int = 200
    lr: float = 0.05
    n_max: int = 200
    n_test: int = 1000
    normalize: str | None = "classes"
    methods: list[Method] = field(default_factory=multilabel_methods)
    task: str = "multi-label"

    @classmethod
    def quick(cls, **overrides) -> MultiLabelConfig:
        """``--quick``: 3 seeds, 100 steps, every method but the unweighted focal loss."""
        methods = [m for m in multilabel_methods() if m.key != "focal"]
        base: dict[str, Any] = {"seeds": 3, "steps": 100, "methods": methods}
        base.update(overrides)
        return cls(**base)

    def as_dict(self) -> dict:
        return {
            "task": self.task,
            "backend": self.backend,
            "models": list(self.models),
            "imbalance_factors": list(self.imbalances),
            "seeds": list(range(self.seeds)),
            "steps": self.steps,
            "optimizer": {"name": "adam", "lr": self.lr, "betas": list(backends.ADAM_BETAS), "eps": backends.ADAM_EPS},
            "batch": "full",
            "data": {
                "generator": "sklearn.datasets.make_multilabel_classification",
                "pool_size": POOL_SIZE,
                "n_features": N_FEATURES,
                "n_classes": N_CLASSES,
                "length": WORDS_PER_DOCUMENT,
                "n_labels": LABELS_PER_DOCUMENT,
                "random_state": 0,
            },
            "n_max": self.n_max,
            "n_test": self.n_test,
            "normalize": self.normalize,
            "reduction": "mean",
            "min_clear_ap": MIN_CLEAR_AP,
            "methods": [m.__dict__ for m in self.methods],
        }


# ------------------------------------------------------------------------------------------------------------
# Runs
# ------------------------------------------------------------------------------------------------------------
def per_class_ap(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``sklearn.metrics.average_precision_score`` of each class (column), in one call (``average=None``)."""
    from sklearn.metrics import average_precision_score

    return np.asarray(average_precision_score(y, scores, average=None), dtype=np.float64)


def per_class_f1(y: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """F1 of each class for 0/1 predictions (0 where a class has neither positives nor predicted positives)."""
    truth = y > 0
    tp = np.sum(truth & predicted, axis=0)
    denominator = truth.sum(axis=0) + predicted.sum(axis=0)
    return np.where(denominator > 0, 2.0 * tp / np.maximum(denominator, 1), 0.0)


def run_multilabel(config: MultiLabelConfig, progress: bool = True) -> dict:
    """Run every (seed, imbalance, model, method); returns the per-run records (see ``summarize_multilabel``)."""
    with single_threaded_blas():
        trainer = backends.load(config.backend)
        x, y = load_multilabel_pool()
        runs = []
        total = len(config.models) * len(config.imbalances) * config.seeds * len(config.methods)
        bar = Progress(total) if progress else None
        t0 = time.perf_counter()
        for seed in range(config.seeds):
            for imbalance in config.imbalances:
                split = long_tailed_multilabel_split(x, y, seed, config.n_test, config.n_max, imbalance)
                head, tail = head_tail_classes(split.class_order)
                for model in config.models:
                    init = init_params(model, x.shape[1], y.shape[1], seed)
                    for method in config.methods:
                        weights = method.weights(split.counts, config.normalize)
                        layers = trainer.fit(
                            init, split.x_train, split.y_train, weights, loss=method.loss, gamma=method.gamma,
                            steps=config.steps, lr=config.lr, multi_label=method.multi_label,
                        )  # fmt: skip
                        scores = forward(layers, split.x_test)
                        ap = per_class_ap(split.y_test, scores)
                        f1 = per_class_f1(split.y_test, scores > 0)  # sigmoid(z) > 0.5
                        order = split.class_order
                        runs.append(
                            {
                                "model": model,
                                "imbalance": imbalance,
                                "seed": seed,
                                "method": method.key,
                                "map": float(ap.mean()),
                                "head_ap": float(ap[head].mean()),
                                "tail_ap": float(ap[tail].mean()),
                                "macro_f1": float(f1.mean()),
                                # by frequency rank: entry i is the class with the i-th largest training count
                                "ap_by_rank": ap[order].tolist(),
                                "f1_by_rank": f1[order].tolist(),
                                "counts_by_rank": split.counts[order].tolist(),
                                "targets_by_rank": split.targets[order].tolist(),
                                "test_positives_by_rank": split.y_test.sum(axis=0)[order].astype(int).tolist(),
                                "n_train": len(split.x_train),
                                "class_order": order.tolist(),
                                "weights_by_rank": None if weights is None else weights[order].tolist(),
                            }
                        )
                        if bar:
                            bar.update(f"{model} IF={imbalance:g} seed={seed} {method.key}")
    return {"config": config.as_dict(), "runs": runs, "train_seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------------------------------------------------
# Summary, table, conclusions (AP in points: percent)
# ------------------------------------------------------------------------------------------------------------
METRICS = ("map", "head_ap", "tail_ap", "macro_f1")
MODEL_NAMES = {"linear": "linear (a logistic regression per class)", "mlp": "one-hidden-layer MLP"}


def summarize_multilabel(result: dict) -> dict:
    """``summary[model][imbalance][method] = {metric: stats, "delta_map_vs_bce": stats, ...}`` (percent)."""
    config = result["config"]
    keys = [m["key"] for m in config["methods"]]
    summary: dict = {}
    for model in config["models"]:
        summary[model] = {}
        for imbalance in config["imbalance_factors"]:
            runs = [r for r in result["runs"] if r["model"] == model and r["imbalance"] == imbalance]
            by_method = {k: sorted((r for r in runs if r["method"] == k), key=lambda r: r["seed"]) for k in keys}
            block = {}
            for key in keys:
                rows = by_method[key]
                entry = {m: _stats([100.0 * r[m] for r in rows]) for m in METRICS}
                entry["ap_by_rank"] = _stats_columns([r["ap_by_rank"] for r in rows])
                for ref in ("bce", "inverse_frequency_class", "inverse_frequency_sample"):
                    if ref in by_method and ref != key:
                        for metric in ("map", "tail_ap", "macro_f1"):
                            diff = [100.0 * (r[metric] - b[metric]) for r, b in zip(rows, by_method[ref], strict=True)]
                            entry[f"delta_{metric}_vs_{ref}"] = _stats(diff)
                block[key] = entry
            summary[model][_key(imbalance)] = block
    return summary


def table_multilabel(result: dict, summary: dict) -> str:
    """One Markdown table per model: rows (imbalance factor, method), mean ± std over seeds, AP points."""
    config = result["config"]
    labels = {m["key"]: m["label"] for m in config["methods"]}
    seeds = len(config["seeds"])
    out = []
    header = (
        "| imbalance | method | mAP % | head AP % | tail AP % | macro F1@0.5 % | Δ mAP vs BCE (paired) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    )
    for model in config["models"]:
        name = MODEL_NAMES.get(model, model)
        out.append(f"Model: {name} ({model}); mean ± std over {seeds} seed(s); held-out test set")
        out.append("")
        out.extend(header)
        for imbalance in config["imbalance_factors"]:
            for key, e in summary[model][_key(imbalance)].items():
                delta = _pm(e["delta_map_vs_bce"], signed=True) if "delta_map_vs_bce" in e else "—"
                out.append(
                    f"| {_key(imbalance)} | {labels[key]} | {_pm(e['map'])} | {_pm(e['head_ap'])} "
                    f"| {_pm(e['tail_ap'])} | {_pm(e['macro_f1'])} | {delta} |"
                )
        out.append("")
    return "\n".join(out)


def ap_verdict(stats: dict, seeds: int) -> str:
    """'better' / 'worse' (a clear paired difference in AP: higher is better) or 'unclear': clear when
    ``|mean| > 2 * std / sqrt(seeds)`` and ``|mean| > MIN_CLEAR_AP``."""
    mean, std = stats["mean"], stats["std"]
    half_width = 2.0 * std / math.sqrt(seeds) if seeds > 1 else math.inf
    if abs(mean) > max(half_width, MIN_CLEAR_AP):
        return "better" if mean > 0 else "worse"
    return "unclear"


_PHRASE = {"better": "beats", "worse": "is worse than", "unclear": "is not clearly different from"}
_SHORT = {"better": "sample clearly better", "worse": "sample clearly worse", "unclear": "not clear"}


def _compare(stats: dict, seeds: int) -> dict:
    return {**stats, "verdict": ap_verdict(stats, seeds), "seeds_higher": int(sum(v > 0 for v in stats["values"]))}


def _paired(block: dict, key: str, ref: str, metric: str = "map") -> dict:
    a, b = block[key][metric]["values"], block[ref][metric]["values"]
    return _stats(np.subtract(a, b))


def conclusions_multilabel(result: dict, summary: dict) -> dict:
    """Conclusions computed from the numbers: per (model, imbalance) and overall."""
    config = result["config"]
    labels = {m["key"]: m["label"] for m in config["methods"]}
    methods = {m["key"]: m for m in config["methods"]}
    cb_keys = [k for k, m in methods.items() if m["kind"] == "cb"]
    seeds = len(config["seeds"])
    settings, lines = [], []
    for model in config["models"]:
        for imbalance in config["imbalance_factors"]:
            block = summary[model][_key(imbalance)]
            if not cb_keys or "bce" not in block:
                continue
            best = max(cb_keys, key=lambda k: block[k]["map"]["mean"])
            best_f1 = max(cb_keys, key=lambda k: block[k]["macro_f1"]["mean"])
            s: dict = {
                "model": model,
                "imbalance": imbalance,
                "best_cb": best,
                "best_cb_map": block[best]["map"],
                "bce_map": block["bce"]["map"],
                "best_cb_vs_bce": _compare(block[best]["delta_map_vs_bce"], seeds),
                "best_cb_tail_ap_vs_bce": _compare(block[best]["delta_tail_ap_vs_bce"], seeds),
                "best_cb_by_f1": best_f1,
                "best_cb_f1_vs_bce": _compare(block[best_f1]["delta_macro_f1_vs_bce"], seeds),
                "sample_vs_class": {},
                "class_same_as_unweighted": {},
            }
            c, t, f = s["best_cb_vs_bce"], s["best_cb_tail_ap_vs_bce"], s["best_cb_f1_vs_bce"]
            line = (
                f"{model}, imbalance {imbalance:g}: best class-balanced setting {labels[best]} "
                f"{_PHRASE[c['verdict']]} plain BCE (mAP {_pm(block[best]['map'])}% vs {_pm(block['bce']['map'])}%; "
                f"paired Δ {_pm(c, True)} pts, higher in {c['seeds_higher']}/{seeds} seeds; tail AP Δ "
                f"{_pm(t, True)})"
            )
            # against inverse frequency (beta = 1) with the same weighting mode: what the beta adds
            ref = f"inverse_frequency_{methods[best]['multi_label']}"
            if ref in block:
                i = _compare(block[best][f"delta_map_vs_{ref}"], seeds)
                s["best_cb_vs_inverse_frequency"] = {**i, "reference": ref}
                line += f"; it {_PHRASE[i['verdict']]} {labels[ref]} (paired Δ {_pm(i, True)} pts)"
            line += (
                f". Macro F1 at 0.5: {labels[best_f1]} {_PHRASE[f['verdict']]} plain BCE (paired Δ {_pm(f, True)} pts)."
            )
            lines.append(line)
            # "sample" against "class": same loss, same weights
            parts = []
            for loss_name in ("sigmoid", "focal"):
                for kind in ("cb", "inverse_frequency"):
                    pair = [k for k, m in methods.items() if m["kind"] == kind and m["loss"] == loss_name]
                    by_mode = {methods[k]["multi_label"]: k for k in pair}
                    if {"class", "sample"} <= by_mode.keys():
                        d = _compare(_paired(block, by_mode["sample"], by_mode["class"]), seeds)
                        name = f"{'CB' if kind == 'cb' else 'inverse frequency'} {loss_name}"
                        s["sample_vs_class"][name] = d
                        parts.append(f"{name} {_pm(d, True)} pts ({_SHORT[d['verdict']]})")
            if parts:
                lines.append(
                    f"{model}, imbalance {imbalance:g}: 'sample' minus 'class' weighting, paired Δ mAP: "
                    + "; ".join(parts)
                    + "."
                )
            # "class" weighting against the unweighted loss of the same kind
            same = []
            for k in (k for k, m in methods.items() if m["multi_label"] == "class" and m["beta"] is not None):
                ref = "focal" if methods[k]["loss"] == "focal" else "bce"
                if ref in block:
                    d = _paired(block, k, ref)
                    identical = bool(np.max(np.abs(d["values"])) < 0.01)
                    s["class_same_as_unweighted"][k] = identical
                    if identical:
                        same.append(labels[k])
            if same:
                lines.append(
                    f"{model}, imbalance {imbalance:g}: {', '.join(same)} give the mAP of the unweighted loss (every "
                    "per-seed |Δ| < 0.01 pts): 'class' scales each class's binary loss by its weight, and with no "
                    "parameter shared between classes Adam's steps do not change with that scale."
                )
            settings.append(s)
    overall: dict = {}
    if settings:

        def count(values):
            values = list(values)
            return {v: values.count(v) for v in ("better", "worse", "unclear")}

        overall["best_cb_vs_bce"] = o = count(s["best_cb_vs_bce"]["verdict"] for s in settings)
        overall["best_cb_vs_inverse_frequency"] = q = count(
            s["best_cb_vs_inverse_frequency"]["verdict"] for s in settings if "best_cb_vs_inverse_frequency" in s
        )
        overall["sample_vs_class"] = p = count(d["verdict"] for s in settings for d in s["sample_vs_class"].values())
        lines.append(
            f"Overall, over {len(settings)} setting(s): the best class-balanced setting beats plain BCE on mAP "
            f"clearly in {o['better']}, is clearly worse in {o['worse']}, not clearly different in {o['unclear']}; "
            f"against inverse frequency with the same weighting mode it is clearly better in "
            f"{q['better']}, clearly worse in {q['worse']}, not clearly different in {q['unclear']}; 'sample' beats "
            "'class' clearly in "
            f"{p['better']} of {sum(p.values())} paired comparisons, is clearly worse in {p['worse']}, not clearly "
            f"different in {p['unclear']}."
        )
        lines.append(
            "Caveat: 'best' is picked on the test set, which favours class-balanced weighting; 'clear' means "
            f"|mean Δ| > 2·std/√seeds over {seeds} paired seed(s) and more than {MIN_CLEAR_AP:g} AP points."
        )
    return {"settings": settings, "overall": overall, "text": lines}
