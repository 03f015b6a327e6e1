"""Aggregate the runs: mean +- std over seeds, paired differences, the printed table and the conclusions.

Deferred re-weighting (DRW) rows are compared with plain CE, with inverse frequency and with the same beta's CB
softmax applied from the start (the comparison that isolates the deferral).

Units: errors and accuracies in percent. ``std`` is the sample standard deviation over seeds (ddof=1; 0 with a
single seed). A paired difference ``A - B`` is taken seed by seed (same data, same initialisation) and then
summarised; it counts as *clear* when ``|mean| > 2 * std / sqrt(seeds)`` (about a 95% paired t-interval that
excludes 0 for 5 seeds) and ``|mean|`` is more than one test sample's worth of error, otherwise the two are "not
clearly different".
"""

from __future__ import annotations

import math
from typing import Any

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
    kinds = {m["key"]: m["kind"] for m in config["methods"]}
    from_start = {m["beta"]: m["key"] for m in config["methods"] if m["kind"] == "cb" and m["loss"] == "softmax"}
    summary: dict = {}
    for model in config["models"]:
        summary[model] = {}
        for imbalance in config["imbalance_factors"]:
            runs = [r for r in result["runs"] if r["model"] == model and r["imbalance"] == imbalance]
            by_method = {k: sorted((r for r in runs if r["method"] == k), key=lambda r: r["seed"]) for k in keys}
            block = {}
            for key in keys:
                rows = by_method[key]
                entry: dict[str, Any] = {m: _stats([100.0 * r[m] for r in rows]) for m in METRICS}
                entry["accuracy_by_rank"] = _stats_columns([r["accuracy_by_rank"] for r in rows])
                for ref in ("ce", "inverse_frequency"):
                    if ref in by_method and ref != key:
                        diff = [100.0 * (r["error"] - b["error"]) for r, b in zip(rows, by_method[ref], strict=True)]
                        entry[f"delta_error_vs_{ref}"] = _stats(diff)
                if kinds[key] == "drw" and rows:
                    entry["beta"] = rows[0]["beta"]
                    entry["drw_start_step"] = rows[0]["drw_start_step"]
                    start_key = from_start.get(entry["beta"])
                    if start_key is not None:
                        entry["from_start"] = start_key
                        pairs = zip(rows, by_method[start_key], strict=True)
                        entry["delta_error_vs_from_start"] = _stats(
                            [100.0 * (r["error"] - b["error"]) for r, b in pairs]
                        )
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


def row_label(labels: dict, key: str, entry: dict) -> str:
    """The method's label; a DRW row with the best CB softmax beta names the beta it got."""
    if key == "drw_best" and "beta" in entry:
        return f"DRW beta={entry['beta']:g} (best CB softmax beta)"
    return labels[key]


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
                    f"| {_key(imbalance)} | {row_label(labels, key, entry)} | {_pm(entry['error'])} "
                    f"| {_pm(entry['head_accuracy'])} "
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
    drw = _drw_conclusions(result, summary, seeds, res, labels)
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
    lines.extend(drw["text"][:-1] if drw["text"] else [])
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
        if drw["text"]:
            overall["drw"] = drw["overall"]
            lines.append(drw["text"][-1])
        lines.append(
            "Caveat: 'best' is picked on the test set (as the paper's beta search is), which favours class-balanced "
            "weighting (and the DRW row with the best CB softmax beta); 'clear' means |mean Δ| > 2·std/√seeds over "
            f"{seeds} paired seed(s) and more than one test sample ({res:.2f} pts)."
        )
    return {"settings": settings, "overall": overall, "drw": drw["settings"], "text": lines}


def _drw_conclusions(result: dict, summary: dict, seeds: int, res: float, labels: dict) -> dict:
    """Per setting, each DRW row against plain CE and against its beta's CB softmax from the start; overall
    counts of the verdicts and one computed sentence on whether deferring helped."""
    config = result["config"]
    drw_keys = [m["key"] for m in config["methods"] if m["kind"] == "drw"]
    settings, text = [], []
    for model in config["models"]:
        for imbalance in config["imbalance_factors"]:
            block = summary[model][_key(imbalance)]
            if not drw_keys or "ce" not in block:
                continue
            parts = []
            for key in drw_keys:
                entry = block[key]
                item = {"model": model, "imbalance": imbalance, "method": key, "beta": entry.get("beta")}
                vs_ce = entry["delta_error_vs_ce"]
                item["vs_ce"] = {**vs_ce, "verdict": verdict(vs_ce, seeds, res), "seeds_better": _better(vs_ce)}
                part = (
                    f"{row_label(labels, key, entry)} {_PHRASE[item['vs_ce']['verdict']]} plain CE "
                    f"(error {_pm(entry['error'])}%; paired Δ {_pm(vs_ce, True)} pts, lower in "
                    f"{item['vs_ce']['seeds_better']}/{seeds} seeds)"
                )
                if "delta_error_vs_from_start" in entry:
                    d = entry["delta_error_vs_from_start"]
                    item["from_start"] = entry["from_start"]
                    item["vs_from_start"] = {**d, "verdict": verdict(d, seeds, res), "seeds_better": _better(d)}
                    part += (
                        f" and {_PHRASE[item['vs_from_start']['verdict']]} {labels[entry['from_start']]} from the "
                        f"start (paired Δ {_pm(d, True)} pts, lower in {item['vs_from_start']['seeds_better']}/{seeds})"
                    )
                parts.append(part)
                settings.append(item)
            start = block[drw_keys[0]].get("drw_start_step")
            text.append(
                f"{model}, imbalance {imbalance:g}, deferred re-weighting (CB weights from step {start} of "
                f"{config['steps']}): " + "; ".join(parts) + "."
            )
    if not settings:
        return {"settings": [], "overall": {}, "text": []}

    def count(field):
        rows = [s[field]["verdict"] for s in settings if field in s]
        return {v: rows.count(v) for v in ("lower", "higher", "unclear")}

    overall = {"vs_ce": count("vs_ce"), "vs_from_start": count("vs_from_start")}
    o, f = overall["vs_ce"], overall["vs_from_start"]
    n_start = sum(f.values())
    sentence = (
        f"Deferred re-weighting, over {len(settings)} (setting, DRW row) pairs: it beats plain CE clearly in "
        f"{o['lower']}, is clearly worse in {o['higher']} and not clearly different in {o['unclear']}"
    )
    if n_start:
        sentence += (
            f"; against the same beta's CB softmax from the start it is clearly better in {f['lower']}, clearly "
            f"worse in {f['higher']} and not clearly different in {f['unclear']} of {n_start}"
        )
        if f["lower"] == 0:
            sentence += ", so deferring the class-balanced weights does not clearly help on this data"
        elif f["lower"] > f["higher"]:
            sentence += ", so deferring the class-balanced weights helps in some settings here"
    text.append(sentence + ".")
    return {"settings": settings, "overall": overall, "text": text}


def _better(stats: dict) -> int:
    return int(sum(v < 0 for v in stats["values"]))
