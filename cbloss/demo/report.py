"""Aggregate the runs: mean +- std over seeds, paired differences, the printed table and the conclusions.

Units: errors and accuracies in percent. ``std`` is the sample standard deviation over seeds (ddof=1; 0 with a
single seed). A paired difference ``A - B`` is taken seed by seed (same data, same initialisation) and then
summarised; it counts as *clear* when ``|mean| > 2 * std / sqrt(seeds)`` (about a 95% paired t-interval that
excludes 0 for 5 seeds) and ``|mean|`` is more than one test sample's worth of error, otherwise the two are "not
clearly different".
"""

from __future__ import annotations

import math

import numpy as np

METRICS = ("error", "head_accuracy", "tail_accuracy")


def _stats(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    std = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return {"mean": float(v.mean()), "std": std, "values": v.tolist()}


def summarize(result: dict) -> dict:
    """``summary[model][imbalance][method] = {metric: stats, "delta_error_vs_ce": stats, ...}`` (percent)."""
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
                entry["accuracy_by_rank"] = _stats_columns([r["accuracy_by_rank"] for r in rows])
                for ref in ("ce", "inverse_frequency"):
                    if ref in by_method and ref != key:
                        diff = [100.0 * (r["error"] - b["error"]) for r, b in zip(rows, by_method[ref], strict=True)]
                        entry[f"delta_error_vs_{ref}"] = _stats(diff)
                block[key] = entry
            summary[model][_key(imbalance)] = block
    return summary


def _stats_columns(rows) -> dict:
    a = 100.0 * np.asarray(rows, dtype=np.float64)
    return {"mean": a.mean(axis=0).tolist(), "std": (a.std(axis=0, ddof=1) if len(a) > 1 else 0 * a[0]).tolist()}


def _key(imbalance: float) -> str:
    return f"{imbalance:g}"


def _pm(stats: dict, signed: bool = False) -> str:
    return f"{stats['mean']:+.2f} ± {stats['std']:.2f}" if signed else f"{stats['mean']:.2f} ± {stats['std']:.2f}"


def table(result: dict, summary: dict) -> str:
    """One Markdown table per model: rows (imbalance factor, method), values mean ± std over seeds, percent."""
    config = result["config"]
    labels = {m["key"]: m["label"] for m in config["methods"]}
    seeds = len(config["seeds"])
    out = []
    header = (
        "| imbalance | method | top-1 error % | head acc % | tail acc % | Δ error vs CE (paired) |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    )
    for model in config["models"]:
        name = "softmax regression" if model == "softmax" else "one-hidden-layer MLP"
        out.append(f"Model: {name} ({model}); mean ± std over {seeds} seed(s); balanced test set")
        out.append("")
        out.extend(header)
        for imbalance in config["imbalance_factors"]:
            for key, entry in summary[model][_key(imbalance)].items():
                delta = _pm(entry["delta_error_vs_ce"], signed=True) if "delta_error_vs_ce" in entry else "—"
                out.append(
                    f"| {_key(imbalance)} | {labels[key]} | {_pm(entry['error'])} | {_pm(entry['head_accuracy'])} "
                    f"| {_pm(entry['tail_accuracy'])} | {delta} |"
                )
        out.append("")
    return "\n".join(out)


def verdict(stats: dict, seeds: int, resolution: float = 0.0) -> str:
    """'lower' / 'higher' (a clear paired difference in error) or 'unclear'. ``resolution``: the error of one
    test sample in points; a mean difference of at most that is never called clear."""
    mean, std = stats["mean"], stats["std"]
    half_width = 2.0 * std / math.sqrt(seeds) if seeds > 1 else math.inf
    if abs(mean) > max(half_width, resolution + 1e-9):
        return "lower" if mean < 0 else "higher"
    return "unclear"


_PHRASE = {"lower": "beats", "higher": "is worse than", "unclear": "is not clearly different from"}


def conclusions(result: dict, summary: dict) -> dict:
    """Conclusions computed from the numbers: per (model, imbalance) and overall."""
    config = result["config"]
    labels = {m["key"]: m["label"] for m in config["methods"]}
    cb_keys = [m["key"] for m in config["methods"] if m["kind"] == "cb"]
    seeds = len(config["seeds"])
    res = 100.0 / (config["test_per_class"] * len(result["runs"][0]["accuracy_by_rank"])) if result["runs"] else 0.0
    has_inv = any(m["kind"] == "inverse_frequency" for m in config["methods"])
    settings = []
    for model in config["models"]:
        for imbalance in config["imbalance_factors"]:
            block = summary[model][_key(imbalance)]
            if not cb_keys or "ce" not in block:
                continue
            best = min(cb_keys, key=lambda k: block[k]["error"]["mean"])
            vs_ce = block[best]["delta_error_vs_ce"]
            setting = {
                "model": model,
                "imbalance": imbalance,
                "best_cb": best,
                "best_cb_error": block[best]["error"],
                "ce_error": block["ce"]["error"],
                "best_cb_vs_ce": {**vs_ce, "verdict": verdict(vs_ce, seeds, res), "seeds_better": _better(vs_ce)},
                "cb_configs_clearly_better_than_ce": [
                    k for k in cb_keys if verdict(block[k]["delta_error_vs_ce"], seeds, res) == "lower"
                ],
                "cb_configs_clearly_worse_than_ce": [
                    k for k in cb_keys if verdict(block[k]["delta_error_vs_ce"], seeds, res) == "higher"
                ],
            }
            if has_inv:
                vs_inv = block[best]["delta_error_vs_inverse_frequency"]
                inv_ce = block["inverse_frequency"]["delta_error_vs_ce"]
                setting["best_cb_vs_inverse_frequency"] = {
                    **vs_inv,
                    "verdict": verdict(vs_inv, seeds, res),
                    "seeds_better": _better(vs_inv),
                }
                setting["inverse_frequency_vs_ce"] = {
                    **inv_ce,
                    "verdict": verdict(inv_ce, seeds, res),
                    "seeds_better": _better(inv_ce),
                }
            settings.append(setting)
    lines = []
    for s in settings:
        head = f"{s['model']}, imbalance {s['imbalance']:g}: best class-balanced setting {labels[s['best_cb']]!s}"
        c = s["best_cb_vs_ce"]
        line = (
            f"{head} {_PHRASE[c['verdict']]} plain CE (error {_pm(s['best_cb_error'])}% vs {_pm(s['ce_error'])}%; "
            f"paired Δ {_pm(c, True)} pts, lower in {c['seeds_better']}/{seeds} seeds)"
        )
        if has_inv:
            i = s["best_cb_vs_inverse_frequency"]
            line += (
                f"; it {_PHRASE[i['verdict']]} inverse frequency "
                f"(paired Δ {_pm(i, True)} pts, lower in {i['seeds_better']}/{seeds})"
            )
        lines.append(line + ".")
    overall = {}
    if settings:
        n = len(settings)

        def count(field):
            return {v: sum(s[field]["verdict"] == v for s in settings) for v in ("lower", "higher", "unclear")}

        overall["best_cb_vs_ce"] = count("best_cb_vs_ce")
        o = overall["best_cb_vs_ce"]
        lines.append(
            f"Overall, over {n} settings: the best class-balanced setting beats plain CE clearly in {o['lower']}, "
            f"is clearly worse in {o['higher']}, and is not clearly different in {o['unclear']}."
        )
        if has_inv:
            overall["best_cb_vs_inverse_frequency"] = count("best_cb_vs_inverse_frequency")
            overall["inverse_frequency_vs_ce"] = count("inverse_frequency_vs_ce")
            o, p = overall["best_cb_vs_inverse_frequency"], overall["inverse_frequency_vs_ce"]
            lines.append(
                f"Against inverse frequency (beta=1), the best class-balanced setting is clearly better in "
                f"{o['lower']}, "
                f"clearly worse in {o['higher']}, not clearly different in {o['unclear']}; inverse frequency itself "
                f"beats plain CE clearly in {p['lower']} and is clearly worse in {p['higher']}."
            )
        lines.append(
            "Caveat: 'best' is picked on the test set (as the paper's beta search is), which favours class-balanced "
            f"weighting; 'clear' means |mean Δ| > 2·std/√seeds over {seeds} paired seed(s) and more than one test "
            f"sample ({res:.2f} pts)."
        )
    return {"settings": settings, "overall": overall, "text": lines}


def _better(stats: dict) -> int:
    return int(sum(v < 0 for v in stats["values"]))
