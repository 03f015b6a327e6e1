"""``cbloss demo``: run the experiment (single-label, or ``--task multi-label``), print the table and the
conclusions, write the JSON and the pictures."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from . import backends
from .experiment import DemoConfig, run_experiment, single_threaded_blas
from .plots import plot_effective_number, plot_per_class_accuracy, plot_toy
from .report import conclusions, summarize, table


def main(config: DemoConfig, out: Path, json_path: Path | None, plots: bool = True, progress: bool = True) -> dict:
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"cbloss demo: backend {config.backend}, models {', '.join(config.models)}, imbalance factors "
        f"{', '.join(f'{m:g}' for m in config.imbalances)}, {config.seeds} seed(s), {len(config.methods)} methods, "
        f"{config.steps} full-batch Adam steps; data: scikit-learn's bundled digits (8x8, 10 classes)",
        file=sys.stderr,
    )
    result = run_experiment(config, progress=progress)
    summary = summarize(result)
    concl = conclusions(result, summary)
    text = (
        table(result, summary)
        + "\nConclusions (computed from the numbers above):\n"
        + "\n".join(f"- {line}" for line in concl["text"])
    )
    print(text)
    result.update(summary=summary, conclusions=concl, pictures={})
    if plots:
        trainer = backends.load(config.backend)
        largest = max(config.imbalances)
        counts = next(r["counts_by_rank"] for r in result["runs"] if r["imbalance"] == largest)
        pictures = {
            "per_class_accuracy": plot_per_class_accuracy(result, summary, out / "per_class_accuracy.png"),
            "effective_number": plot_effective_number(
                [0.9, 0.99, 0.999, 0.9999], out / "effective_number.png", counts=counts, normalize=config.normalize
            ),
        }
        with single_threaded_blas():
            pictures["toy_decision_boundary"], result["toy"] = plot_toy(
                trainer, out / "toy_decision_boundary.png", normalize=config.normalize
            )
        result["pictures"] = {k: str(v) for k, v in pictures.items()}
    return _write(result, text, out, json_path, start)


def main_multilabel(config, out: Path, json_path: Path | None, plots: bool = True, progress: bool = True) -> dict:
    """``cbloss demo --task multi-label``: run, print the table and the conclusions, write the JSON and the picture."""
    from .multilabel import conclusions_multilabel, run_multilabel, summarize_multilabel, table_multilabel
    from .plots import plot_per_class_ap

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"cbloss demo --task multi-label: backend {config.backend}, models {', '.join(config.models)}, imbalance "
        f"factors {', '.join(f'{m:g}' for m in config.imbalances)}, {config.seeds} seed(s), {len(config.methods)} "
        f"methods, {config.steps} full-batch Adam steps; data: scikit-learn's make_multilabel_classification "
        "(10 classes, 64 features, a fixed pool of 5000)",
        file=sys.stderr,
    )
    result = run_multilabel(config, progress=progress)
    summary = summarize_multilabel(result)
    concl = conclusions_multilabel(result, summary)
    text = (
        table_multilabel(result, summary)
        + "\nConclusions (computed from the numbers above):\n"
        + "\n".join(f"- {line}" for line in concl["text"])
    )
    print(text)
    result.update(summary=summary, conclusions=concl, pictures={})
    if plots:
        result["pictures"] = {"per_class_ap": str(plot_per_class_ap(result, summary, out / "per_class_ap.png"))}
    return _write(result, text, out, json_path, start)


def _write(result: dict, text: str, out: Path, json_path: Path | None, start: float) -> dict:
    (out / "report.md").write_text(text + "\n")
    json_path = json_path or out / "results.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    result["total_seconds"] = time.perf_counter() - start
    json_path.write_text(json.dumps(result, indent=1, default=_json_default) + "\n")
    written = [str(json_path), str(out / "report.md"), *result["pictures"].values()]
    print(f"\nwrote {', '.join(written)} ({result['total_seconds']:.1f}s)", file=sys.stderr)
    return result


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
