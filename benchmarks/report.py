"""`python -m benchmarks.report [results.json ...] [-o docs/benchmarks.md]`: the markdown report of one or more
harness runs (e.g. one per framework), to stdout or to a file.

The JSON a run writes (``benchmarks/results/results.json``):

- ``meta``: command (the run's command line), frameworks, quick, repeats, warmup, overhead_calls_per_sample,
  sections, rows (the kinds of rows: single-label, multi-label), device, devices (framework -> device
  description), compile_backend, threads (framework -> description), allocator (the CPU allocator's settings,
  ``harness.pin_allocator``), python, machine, system, processor,
  cpu_count, versions (framework -> version), cbloss (version, commit, uncommitted_changes);
- ``results`` (speed) and ``compiled`` (``torch.compile``): one row per loss and shape with framework, mode,
  loss, baseline, shape, target, candidate_s and baseline_s ({min, median, max} seconds per call),
  first_call_s ({candidate, baseline}: the first warm-up call, compilation included), calls_per_sample,
  page-fault medians, ratio (candidate median / baseline median) and meets_target; a failed cell has
  ``error`` (its text) and ratio None instead of the timings. ``compiled`` rows also have compile_backend,
  dynamic and fullgraph. The multi-label rows' loss is ``CB sigmoid multi-label`` or ``CB focal multi-label``;
- ``overhead``: rows as in ``results`` at the (2, 3) input, each sample the mean of calls_per_sample calls;
- ``memory``: one row per loss, label_smoothing and shape with framework, baseline, method, input_bytes,
  candidate_peak_bytes, baseline_peak_bytes, candidate_peak_in_inputs, baseline_peak_in_inputs, ratio, target
  (2.0) and meets_target (or ``error``);
- ``notes``: sections a framework skipped, and why.

A run repeated in several processes (``--processes K``, :func:`benchmarks.harness.combine`) writes the same
JSON with ``meta.processes`` (K) and, in every row, ``ratio_runs`` (each process's ratio, None where it failed);
each row is that of the process whose ratio is the row's median.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

GOALS = [
    "Speed (eager PyTorch; JAX `jit`; TensorFlow `tf.function` and XLA): CB softmax <= 1.10x the framework's "
    "unweighted fused softmax cross-entropy (PyTorch eager: 1.25x at (4096, 10)); CB focal <= 1.5x its sigmoid "
    "BCE; PyTorch eager also CB sigmoid <= 1.10x and CB softmax-focal <= 1.5x.",
    "`torch.compile` (both sides compiled): CB sigmoid <= 1.10x `F.binary_cross_entropy_with_logits`; CB focal "
    "<= 1.25x the same; CB softmax-focal <= 1.25x `F.cross_entropy`.",
    'Multi-label (`multi_label="class"` on multi-hot targets; the framework\'s fused BCE-with-logits on the same '
    "targets with the same class weights, summed over classes, mean over positions): CB sigmoid <= 1.10x; CB focal "
    "<= 1.5x in PyTorch eager and TensorFlow `tf.function`, <= 1.25x compiled (`torch.compile`, JAX `jit`, "
    "TensorFlow XLA).",
    "Peak memory of one forward + backward: <= 2x the framework's own loss with the same class weights and "
    "label smoothing.",
    "Per-call overhead at a (2, 3) input: reported next to the framework's loss, no ratio goal against it (the "
    "fixed cost of a call is compared across versions of cbloss, each run side by side with the same script).",
]
COMPILED_MODES = ("torch.compile", "jit", "xla")


def _mode(r: dict) -> str:
    return f"{r['mode']} ({r['compile_backend']})" if r.get("compile_backend") else r["mode"]


def _shape(r: dict) -> str:
    return "×".join(map(str, r["shape"]))


def _ok(r: dict) -> str:
    if r.get("error"):
        return "error"
    return {None: "", True: "yes", False: "**no**"}[r["meets_target"]]


def _ratio(r: dict) -> str:
    if r.get("error"):
        return "error"
    runs = [ratio for ratio in r.get("ratio_runs", []) if ratio is not None]
    low, high = (f"{min(runs):.2f}", f"{max(runs):.2f}") if runs else ("", "")
    notes = [f"{low}-{high}"] if low != high else []  # a range only where one shows
    failed = len(r.get("ratio_runs", [])) - len(runs)
    notes += [f"{failed} of {len(r['ratio_runs'])} failed"] if failed else []
    return f"{r['ratio']:.2f}" + (f" ({'; '.join(notes)})" if notes else "")


def _goal(r: dict) -> str:
    return "" if r.get("target") is None else f"<= {r['target']:.2f}"


def _ms(r: dict, variant: str) -> str:
    return "" if r.get("error") else f"{r[variant + '_s']['median'] * 1e3:.3f}"


def _us(r: dict, variant: str) -> str:
    return "" if r.get("error") else f"{r[variant + '_s']['median'] * 1e6:.1f}"


def _bytes(value: int | None) -> str:
    if value is None:
        return ""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:.2f} {unit}"
    return f"{value} B"


def _in_inputs(r: dict, variant: str) -> str:
    key = f"{variant}_peak_in_inputs"
    return f"{r[key]:.2f}" if key in r else ""


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    right = {i for i, h in enumerate(head) if h.endswith(("ms", "µs", "peak", "ratio", "inputs", "goal"))}
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---:" if i in right else "---" for i in range(len(head))) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def _speed(rows: list[dict]) -> list[str]:
    head = ["framework", "mode", "loss", "vs", "shape", "cbloss ms", "native ms", "ratio", "goal", "ok"]
    body = [
        [
            *(r["framework"], _mode(r), r["loss"], f"`{r['baseline']}`", _shape(r)),
            *(_ms(r, "candidate"), _ms(r, "baseline"), _ratio(r), _goal(r), _ok(r)),
        ]
        for r in rows
    ]
    return _table(head, body)


def _errors(rows: list[dict]) -> list[str]:
    failed = [r for r in rows if r.get("error")]
    if not failed:
        return []
    lines = ["", "Errors:", ""]
    for r in failed:
        text = r["error"].splitlines()[0][:300] if r["error"].strip() else r["error"]
        lines.append(f"- {r['framework']} {r.get('mode', '')} {r['loss']} {_shape(r)}: `{text}`")
    return lines


def _processes(meta: dict) -> str:
    count = meta.get("processes", 1)
    return f", in each of {count} processes (each cell: the median process's row)" if count > 1 else ""


def _machine(meta: dict) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items())
    devices = "; ".join(f"{k}: {v}" for k, v in meta.get("devices", {}).items())
    threads = "; ".join(f"{k}: {v}" for k, v in meta.get("threads", {}).items())
    kind = "quick run (`--quick`: small shapes)" if meta.get("quick") else "full run"
    text = (
        f"{', '.join(meta.get('frameworks', []))}: {kind}, `{meta.get('command', 'python -m benchmarks')}`; "
        f"timed samples per variant: {meta.get('repeats')} (overhead: {meta.get('overhead_calls_per_sample')} "
        f"calls per sample){_processes(meta)}; sections: {', '.join(meta.get('sections', []))}; "
        f"device `{meta.get('device')}` "
        f"({devices}); {meta.get('system')} {meta.get('processor')}, {meta.get('cpu_count')} logical CPUs; "
        f"threads: {threads}; allocator: {meta.get('allocator', 'not recorded')}; Python {meta.get('python')}, "
        f"{versions}"
    )
    code = meta.get("cbloss", {})
    if code.get("commit"):
        changes = " with uncommitted changes to cbloss/" if code.get("uncommitted_changes") else ""
        text += f"; cbloss {code.get('version')} at commit `{code['commit']}`{changes}"
    if "torch" in meta.get("frameworks", []) and "compile" in meta.get("sections", []):
        text += f"; torch.compile backend `{meta.get('compile_backend')}`"
    return text + "."


def markdown(reports: list[dict], sources: list[str] | None = None) -> str:
    """The markdown report of the harness's JSON ``reports`` (one per run; their rows are concatenated)."""
    rows: dict[str, list[dict]] = {key: [] for key in ("results", "compiled", "overhead", "memory", "notes")}
    for report in reports:
        for key in rows:
            rows[key].extend(report.get(key, []))
    quick = [name for r in reports if r["meta"].get("quick") for name in r["meta"].get("frameworks", [])]
    out = [
        "# Benchmarks",
        "",
        "<!-- Generated by `python -m benchmarks.report` from the JSON of `python -m benchmarks`; do not edit. -->",
        "",
        "cbloss's class-balanced losses against each framework's own fused loss, forward + backward, float32. "
        "Every number is a ratio of medians, cbloss / the framework's loss, both measured side by side in one "
        "process with their calls interleaved, so that the machine's noise hits both alike. Times are per call "
        "(median over the timed samples); ratios above 1 mean cbloss is slower or uses more memory. Where a run "
        "was repeated in several processes (`--processes`), a cell is the row of the process whose ratio is the "
        "median of the cell's, with the range over the processes in brackets (and how many failed, if any).",
        "",
    ]
    if quick:
        out += [
            f"> **The numbers of {', '.join(quick)} come from a quick run** (`python -m benchmarks --quick`: "
            "small shapes, few repeats), which checks that every column can be measured; at small shapes the "
            "per-call overhead dominates, so these ratios are not those of the issues' shapes. A full run "
            "(`python -m benchmarks`, then `python -m benchmarks.report`) replaces them.",
            "",
        ]
    out += ["## Machine and runs", ""]
    for i, report in enumerate(reports):
        source = f" (`{sources[i]}`)" if sources and i < len(sources) else ""
        out.append(f"- {_machine(report['meta'])}{source}")
    out += ["", "## Goals", ""] + [f"- {goal}" for goal in GOALS]

    eager = [r for r in rows["results"] if r["mode"] not in COMPILED_MODES]
    compiled = rows["compiled"] + [r for r in rows["results"] if r["mode"] in COMPILED_MODES]
    out += ["", "## Speed: eager and graph modes", ""]
    out += [
        "PyTorch eager (the `ClassBalancedLoss` module, label validation on) and TensorFlow `tf.function` (no XLA); "
        "the framework's loss is unweighted, except in the multi-label rows (below).",
        "",
    ]
    out += _speed(eager) if eager else ["Not measured."]
    out += _errors(eager)
    out += ["", "## Speed: compiled", ""]
    out += [
        "`torch.compile(dynamic=False, fullgraph=True)` applied to both the module and the PyTorch loss "
        "(compilation in the untimed warm-up), JAX `jit` (`value_and_grad`) and TensorFlow "
        "`tf.function(jit_compile=True)` (XLA).",
        "",
    ]
    out += _speed(compiled) if compiled else ["Not measured."]
    out += _errors(compiled)
    out += [
        "",
        'The multi-label rows (`multi_label="class"`, docs/conventions.md §6.5) take seeded multi-hot targets '
        "shaped like the logits, with a long-tailed class frequency (class `c` positive at a position with "
        "probability `0.5 * 0.01 ** (c / (C - 1))`), and compare with the framework's fused BCE-with-logits on the "
        "same targets with the same class weights, summed over classes, mean over positions "
        '(PyTorch: `reduction="sum"` divided by the number of positions): CB sigmoid\'s number. Before it is timed, '
        "each case checks that cbloss at gamma = 0 gives the baseline's value and gradient (eagerly), so that both "
        "sides weigh and reduce alike; the focal element at the timed gamma is checked by the conformance suite "
        "(tests/test_conformance.py), not here.",
    ]

    out += ["", "## Per-call overhead", ""]
    out += [
        "One forward + backward at a (2, 3) input: the fixed cost of a call (dispatch, checks, tracing guards).",
        "",
    ]
    if rows["overhead"]:
        head = ["framework", "mode", "loss", "vs", "cbloss µs", "native µs", "ratio"]
        body = [
            [
                *(r["framework"], r["mode"], r["loss"], f"`{r['baseline']}`"),
                *(_us(r, "candidate"), _us(r, "baseline"), _ratio(r)),
            ]
            for r in rows["overhead"]
        ]
        out += _table(head, body) + _errors(rows["overhead"])
    else:
        out.append("Not measured.")

    out += ["", "## Peak memory", ""]
    out += [
        "The peak memory allocated during one forward + backward (the gradient included, the inputs excluded), "
        "against the framework's loss from the same integer labels with the same class weights and label "
        "smoothing (for the sigmoid losses, BCE on the smoothed one-hot target, built within the measured call; "
        "for the multi-label rows, BCE on the same multi-hot target, smoothed towards 1/2 within the call); "
        '"in inputs" is the peak in units of the logits\' size. Method per row: '
        + "; ".join(sorted({f"{r['framework']}: {r['method']}" for r in rows["memory"]}) or ["none"])
        + ".",
        "",
    ]
    if rows["memory"]:
        head = ["framework", "loss", "label smoothing", "vs", "shape", "cbloss peak", "native peak"]
        head += ["cbloss in inputs", "native in inputs", "ratio", "goal", "ok"]
        body = [
            [
                *(r["framework"], r["loss"], f"{r['label_smoothing']:g}", f"`{r['baseline']}`", _shape(r)),
                *(_bytes(r["candidate_peak_bytes"]), _bytes(r["baseline_peak_bytes"])),
                *(_in_inputs(r, "candidate"), _in_inputs(r, "baseline"), _ratio(r), _goal(r), _ok(r)),
            ]
            for r in rows["memory"]
        ]
        out += _table(head, body) + _errors(rows["memory"])
    else:
        out.append("Not measured.")
    if rows["notes"]:
        out += ["", "Notes:", ""] + [f"- {note}" for note in rows["notes"]]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="*", type=Path, default=[Path("benchmarks/results/results.json")])
    parser.add_argument("-o", "--output", type=Path, default=None, help="the markdown file (default: stdout)")
    args = parser.parse_args(argv)
    reports = [json.loads(path.read_text()) for path in args.results]
    text = markdown(reports, [str(path) for path in args.results])
    if args.output is None:
        print(text, end="")
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
