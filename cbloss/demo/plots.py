"""The demo's pictures, drawn with matplotlib's object API (``matplotlib.figure.Figure``, Agg: no display and no
global pyplot state). matplotlib is imported lazily, inside each function."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import cbloss

from .models import init_params
from .report import row_label


def _figure(**kwargs):
    try:
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - the demo extra installs it
        raise RuntimeError("plots need matplotlib: pip install 'class-balanced-loss[demo]'") from error
    return Figure(**kwargs)


def plot_effective_number(
    betas, path, counts=None, normalize: str | None = "classes", n_max: float | None = None
) -> Path:
    """E_n against n (log-log) for each beta, with E_n = n (beta = 1) and the limit 1/(1 - beta); with ``counts``,
    a second panel shows the class weights ``cbloss.class_balanced_weights(counts, beta)`` of those counts."""
    betas = [float(b) for b in betas]
    fig = _figure(figsize=(11 if counts is not None else 6, 4.2), layout="constrained")
    axes = fig.subplots(1, 2 if counts is not None else 1, squeeze=False)[0]
    top = n_max or max(1e5, 10 / (1 - min([b for b in betas if b < 1], default=0.9)))
    n = np.unique(np.round(np.logspace(0, np.log10(top), 300)))
    ax = axes[0]
    ax.plot(n, n, color="black", lw=1, ls="--", label="beta = 1 (E_n = n)")
    for beta in betas:
        color = "black"  # beta = 1: the line above
        if beta < 1:
            (line,) = ax.plot(n, cbloss.effective_number(n, beta), label=f"beta = {beta:g}")
            color = line.get_color()
            ax.axhline(1 / (1 - beta), color=color, lw=0.6, ls=":")
        if counts is not None:
            c = np.asarray(counts, dtype=np.float64)
            ax.plot(c, cbloss.effective_number(c, beta), "o", ms=4, color=color)
    ax.set(xscale="log", yscale="log", xlabel="number of samples n", ylabel="effective number E_n")
    ax.set_title("E_n = (1 - beta^n) / (1 - beta): ~n as beta -> 1, saturates at 1/(1 - beta)", fontsize=9)
    ax.legend(fontsize=8)
    if counts is not None:
        c = np.asarray(counts, dtype=np.float64)
        order = np.argsort(-c, kind="stable")
        ax = axes[1]
        rank = np.arange(len(c))
        for beta in [b for b in betas if b < 1] + [1.0]:  # inverse frequency once, last
            w = cbloss.class_balanced_weights(c, beta, normalize=normalize)[order]
            ax.plot(rank, w, "o-", ms=4, label=f"beta = {beta:g}" + (" (inverse frequency)" if beta == 1 else ""))
        ax.set_xticks(rank, [f"{v:g}" for v in c[order]], fontsize=8)
        ax.set(yscale="log", xlabel="class, by training count n_i (markers on the left: these n_i)", ylabel="weight")
        ax.set_title(f"class weights of this split (normalize={normalize!r})", fontsize=9)
        ax.legend(fontsize=8)
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


def plot_per_class_accuracy(result: dict, summary: dict, path) -> Path:
    """Per-class test accuracy (mean ± std over seeds) by training-count rank, at the largest imbalance factor:
    plain CE (before), inverse frequency, the best class-balanced setting and the best DRW row (after)."""
    config = result["config"]
    labels = {m["key"]: m["label"] for m in config["methods"]}
    cb_keys = [m["key"] for m in config["methods"] if m["kind"] == "cb"]
    drw_keys = [m["key"] for m in config["methods"] if m["kind"] == "drw"]
    imbalance = max(config["imbalance_factors"])
    key = f"{imbalance:g}"
    models = config["models"]
    fig = _figure(figsize=(5.8 * len(models), 4.8), layout="constrained")
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    counts = next(r["counts_by_rank"] for r in result["runs"] if r["imbalance"] == imbalance)
    for ax, model in zip(axes, models, strict=True):
        block = summary[model][key]
        shown = [k for k in ("ce", "inverse_frequency") if k in block]
        for keys in (cb_keys, drw_keys):
            if keys:
                shown.append(min(keys, key=lambda k: block[k]["error"]["mean"]))
        rank = np.arange(len(counts))
        width = 0.8 / len(shown)
        for j, k in enumerate(shown):
            acc = block[k]["accuracy_by_rank"]
            ax.bar(rank + (j - (len(shown) - 1) / 2) * width, acc["mean"], width, yerr=acc["std"],
                   label=f"{row_label(labels, k, block[k])}: error {block[k]['error']['mean']:.1f}%",
                   capsize=2)  # fmt: skip
        ax.set_xticks(rank, [str(c) for c in counts], fontsize=8)
        ax.set(xlabel="class, most to least frequent (training count n_i)", ylabel="test accuracy %", ylim=(0, 105))
        ax.set_title(f"{model}, imbalance {key}: per-class accuracy before / after", fontsize=9)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


def plot_per_class_ap(result: dict, summary: dict, path) -> Path:
    """The multi-label task's per-class test AP (mean ± std over seeds) by training-count rank, at the largest
    imbalance factor: plain BCE (before), inverse frequency ("class") and the best class-balanced setting of each
    weighting mode, "class" and "sample" (after)."""
    config = result["config"]
    labels = {m["key"]: m["label"] for m in config["methods"]}
    modes = {mode: [m["key"] for m in config["methods"] if m["kind"] == "cb" and m["multi_label"] == mode]
             for mode in ("class", "sample")}  # fmt: skip
    imbalance = max(config["imbalance_factors"])
    key = f"{imbalance:g}"
    models = config["models"]
    fig = _figure(figsize=(5.8 * len(models), 4.8), layout="constrained")
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    run = next(r for r in result["runs"] if r["imbalance"] == imbalance)
    counts = run["counts_by_rank"]
    for ax, model in zip(axes, models, strict=True):
        block = summary[model][key]
        shown = [k for k in ("bce", "inverse_frequency_class") if k in block]
        shown += [max(keys, key=lambda k: block[k]["map"]["mean"]) for keys in modes.values() if keys]
        rank = np.arange(len(counts))
        width = 0.8 / len(shown)
        for j, k in enumerate(shown):
            ap = block[k]["ap_by_rank"]
            ax.bar(rank + (j - (len(shown) - 1) / 2) * width, ap["mean"], width, yerr=ap["std"],
                   label=f"{labels[k]}: mAP {block[k]['map']['mean']:.1f}%", capsize=2)  # fmt: skip
        ax.set_xticks(rank, [str(c) for c in counts], fontsize=8)
        ax.set(xlabel="class, most to least frequent (training positives n_i, seed 0)", ylabel="test AP %",
               ylim=(0, 105))  # fmt: skip
        ax.set_title(f"{model}, imbalance {key}: per-class average precision before / after", fontsize=9)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


def toy_problem(seed: int = 0, n_head: int = 1000, n_tail: int = 20):
    """Two 2-D Gaussian classes: a head class of ``n_head`` points and a tail class of ``n_tail``."""
    rng = np.random.default_rng([seed, 7])
    head = rng.normal([0.0, 0.0], 1.0, size=(n_head, 2))
    tail = rng.normal([2.2, 1.6], 0.8, size=(n_tail, 2))
    x = np.concatenate([head, tail]).astype(np.float32)
    y = np.concatenate([np.zeros(n_head, np.int64), np.ones(n_tail, np.int64)])
    return x, y


def plot_toy(
    trainer, path, beta: float = 0.99, normalize: str | None = "classes", steps: int = 200
) -> tuple[Path, dict]:
    """The decision boundary of softmax regression on the 2-class toy, trained by ``trainer`` (a demo backend)
    without weights, with inverse-frequency weights and with class-balanced weights."""
    x, y = toy_problem()
    counts = cbloss.count_samples_per_class(y, 2)
    init = init_params("softmax", 2, 2, seed=0)
    variants = {
        "no weighting": None,
        "inverse frequency (beta=1)": cbloss.class_balanced_weights(counts, 1.0, normalize=normalize),
        f"class-balanced (beta={beta:g})": cbloss.class_balanced_weights(counts, beta, normalize=normalize),
    }
    fig = _figure(figsize=(6.2, 5), layout="constrained")
    ax = fig.subplots()
    ax.scatter(*x[y == 0].T, s=5, alpha=0.35, color="tab:blue", label=f"head class (n={counts[0]})")
    ax.scatter(*x[y == 1].T, s=22, color="tab:red", marker="^", label=f"tail class (n={counts[1]})")
    grid = np.linspace(-3.5, 5, 200, dtype=np.float32)
    gx, gy = np.meshgrid(grid, grid)
    points = np.stack([gx.ravel(), gy.ravel()], axis=1)
    info = {"counts": counts.tolist(), "boundaries": {}}
    for (name, w), color in zip(variants.items(), ("black", "tab:green", "tab:purple"), strict=True):
        ((weight, bias),) = trainer.fit(init, x, y, w, loss="softmax", gamma=None, steps=steps, lr=0.1)
        z = points @ weight + bias
        ax.contour(gx, gy, (z[:, 1] - z[:, 0]).reshape(gx.shape), levels=[0.0], colors=[color], linewidths=1.8)
        ax.plot([], [], color=color, label=f"{name}" + ("" if w is None else f", w = {np.round(w, 3).tolist()}"))
        pred = np.argmax(x @ weight + bias, axis=-1)
        info["boundaries"][name] = {
            "weights": None if w is None else w.tolist(),
            "train_recall_head": float(np.mean(pred[y == 0] == 0)),
            "train_recall_tail": float(np.mean(pred[y == 1] == 1)),
        }
    ax.set(xlim=(grid[0], grid[-1]), ylim=(grid[0], grid[-1]), xlabel="x1", ylabel="x2")
    ax.set_title("head vs tail: decision boundaries of softmax regression", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path, info
