"""The ``cbloss`` command line.

    cbloss demo [--task single-label|multi-label] [--backend numpy|torch|jax|tensorflow] [--quick] [--out DIR]
                [--json PATH] ...
    cbloss weights (--counts 5000,2997,... | --labels FILE.npy|.csv [--num-classes C]) --beta 0.999
                   [--normalize classes|samples|none] [--json]
    cbloss plot effective-number --beta 0.9,0.99,0.999,0.9999 [-o fig.png] [--counts ...]

Every bad argument ends in one line ``cbloss: error: ...`` on stderr and exit status 2 (argparse's), never a
traceback. scikit-learn, matplotlib and the frameworks are imported only by the commands that need them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from . import __version__
from .options import NORMALIZATIONS, ZERO_COUNTS

EXIT_USAGE = 2


class UsageError(Exception):
    """A bad argument found after parsing (a file that cannot be read, counts the core rejects, ...)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (no usage block): ``<prog>: error: <message>``."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


# ------------------------------------------------------------------------------------------------------------
# Argument types
# ------------------------------------------------------------------------------------------------------------
def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what}: {text!r} is not a number") from None
    if math.isnan(value):
        raise argparse.ArgumentTypeError(f"{what}: NaN is not allowed")
    return value


def beta_value(text: str) -> float:
    value = _number(text.strip(), "beta")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"beta must be in [0, 1], got {text.strip()}")
    return value


def _list(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise argparse.ArgumentTypeError(f"{what}: expected a comma-separated list such as 1,2,3, got {text!r}")
    return items


def beta_list(text: str) -> list[float]:
    return [beta_value(t) for t in _list(text, "beta")]


def count_list(text: str) -> list[float]:
    counts = []
    for t in _list(text, "counts"):
        value = _number(t, "counts")
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(f"counts must be finite and >= 0, got {t}")
        counts.append(value)
    return counts


def imbalance_list(text: str) -> list[float]:
    values = [_number(t, "imbalance") for t in _list(text, "imbalance")]
    if any(not (math.isfinite(v) and v >= 1) for v in values):
        raise argparse.ArgumentTypeError(f"imbalance factors must be finite and >= 1, got {text}")
    return values


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def normalize_value(text: str) -> str | None:
    if text == "none":
        return None
    if text not in NORMALIZATIONS:
        choices = ", ".join(str(choice).lower() for choice in NORMALIZATIONS)
        raise argparse.ArgumentTypeError(f"normalize must be one of {choices}; got {text!r}")
    return text


def model_list(text: str) -> tuple[str, ...]:
    from .demo.models import MODELS

    models = tuple(_list(text, "models"))
    bad = [m for m in models if m not in MODELS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown model(s) {bad}; choose from {list(MODELS)}")
    return models


# ------------------------------------------------------------------------------------------------------------
# Parser
# ------------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from .demo.backends import BACKENDS

    parser = _Parser(prog="cbloss", description="Class-Balanced Loss (Cui et al., CVPR 2019): demo and tools.")
    parser.add_argument("--version", action="version", version=f"cbloss {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{demo,weights,plot}", parser_class=_Parser)
    sub.required = True

    demo = sub.add_parser(
        "demo",
        help="the long-tailed before/after experiment on scikit-learn's bundled digits",
        description="Train softmax regression and a one-hidden-layer MLP on long-tailed splits of the bundled "
        "digits with plain softmax CE (before), inverse-frequency, class-balanced and deferred class-balanced "
        "losses (after); print a table of balanced test error and conclusions; write the JSON and pictures. "
        "--task multi-label: the same on a long-tailed multi-label problem from scikit-learn's generator, with "
        "BCE (before) and class-balanced sigmoid/focal losses weighted per class or per sample (after), by mAP.",
    )
    demo.add_argument(
        "--task",
        choices=["single-label", "multi-label"],
        default="single-label",
        help="single-label digits (default) or the multi-label problem",
    )
    demo.add_argument(
        "--backend",
        choices=list(BACKENDS),
        default=None,
        help="framework that trains (default: the first installed of torch, jax, tensorflow, else numpy)",
    )
    demo.add_argument(
        "--quick",
        action="store_true",
        help="a smaller run (3 seeds, 100 steps; single-label: 2 imbalances, 5 methods; multi-label: 7 methods)",
    )
    demo.add_argument("--seeds", type=positive_int, help="number of seeds (default 5; --quick 3)")
    demo.add_argument("--steps", type=positive_int, help="full-batch Adam steps per run (default 200; --quick 100)")
    demo.add_argument(
        "--imbalance", type=imbalance_list, help="imbalance factors (default 10,20,50; --quick 10,50; multi-label 50)"
    )
    demo.add_argument("--models", type=model_list, help="models (default softmax,mlp; multi-label linear,mlp)")
    demo.add_argument(
        "--normalize", type=normalize_value, default="classes", help="class-weight normalisation (default classes)"
    )
    demo.add_argument("--focal-beta", type=beta_value, default=None, help="beta of the CB focal runs (default 0.99)")
    demo.add_argument("--out", type=Path, default=Path("cbloss-demo-output"), help="output folder for the pictures")
    demo.add_argument("--json", type=Path, default=None, help="write every number here (default OUT/results.json)")
    demo.add_argument("--no-plots", action="store_true", help="skip the pictures")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    weights = sub.add_parser(
        "weights",
        help="table of n_i, E_n and class-balanced weights",
        description="Effective numbers and class-balanced weights of given class counts.",
    )
    source = weights.add_mutually_exclusive_group(required=True)
    source.add_argument("--counts", type=count_list, help="samples per class, comma-separated")
    source.add_argument("--labels", type=Path, help="a .npy or .csv/.txt file of integer labels")
    weights.add_argument("--num-classes", type=positive_int, help="number of classes (default: max label + 1)")
    weights.add_argument("--beta", type=beta_value, required=True, help="beta in [0, 1] (1: inverse frequency)")
    weights.add_argument(
        "--normalize", type=normalize_value, default="classes", help="classes (default), samples, none"
    )
    weights.add_argument(
        "--zero-count", choices=ZERO_COUNTS, default="error", help="a class with 0 samples: error or weight 0"
    )
    weights.add_argument("--json", action="store_true", help="print JSON instead of a table")

    plot = sub.add_parser("plot", help="pictures", description="Pictures of the effective number.")
    plots = plot.add_subparsers(dest="figure", metavar="{effective-number}", parser_class=_Parser)
    plots.required = True
    en = plots.add_parser("effective-number", help="E_n against n for several beta")
    en.add_argument("--beta", type=beta_list, default=[0.9, 0.99, 0.999, 0.9999], help="comma-separated betas")
    en.add_argument("-o", "--output", type=Path, default=Path("effective_number.png"), help="PNG file to write")
    en.add_argument("--counts", type=count_list, help="also mark these class counts and plot their weights")
    en.add_argument("--normalize", type=normalize_value, default="classes", help="weights' normalisation")
    return parser


# ------------------------------------------------------------------------------------------------------------
# Commands
# ------------------------------------------------------------------------------------------------------------
def _read_labels(path: Path) -> np.ndarray:
    if not path.is_file():
        raise UsageError(f"--labels: no such file: {path}")
    try:
        if path.suffix == ".npy":
            labels = np.load(path, allow_pickle=False)
        elif path.suffix in (".csv", ".txt"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an empty file: reported below
                labels = np.loadtxt(path, delimiter=",", ndmin=1)
        else:
            raise UsageError(f"--labels: expected a .npy, .csv or .txt file, got {path.name}")
    except (ValueError, OSError) as error:
        raise UsageError(f"--labels: cannot read {path}: {str(error).splitlines()[0]}") from None
    labels = np.asarray(labels).ravel()
    if labels.size == 0:
        raise UsageError(f"--labels: {path} holds no labels")
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise UsageError(f"--labels: {path} holds non-integer values")
    elif labels.dtype.kind not in "iu":
        raise UsageError(f"--labels: {path} must hold integer class labels, got dtype {labels.dtype}")
    if labels.min() < 0:
        raise UsageError(f"--labels: labels must be >= 0, got {int(labels.min())}")
    if labels.max() >= 2**31:  # a class index, not a count of 2**31 classes to allocate
        raise UsageError(f"--labels: labels must be below 2**31, got {int(labels.max())}")
    return labels.astype(np.int64)


def cmd_weights(args) -> int:
    from . import class_balanced_weights, count_samples_per_class, effective_number

    if args.counts is not None:
        if args.num_classes is not None and args.num_classes != len(args.counts):
            raise UsageError(f"--num-classes {args.num_classes} does not match the {len(args.counts)} counts")
        counts = np.asarray(args.counts, dtype=np.float64)
    else:
        labels = _read_labels(args.labels)
        num_classes = args.num_classes or int(labels.max()) + 1
        if labels.max() >= num_classes:
            raise UsageError(f"--num-classes {num_classes}: the labels go up to {int(labels.max())}")
        counts = count_samples_per_class(labels, num_classes).astype(np.float64)
    try:
        raw = class_balanced_weights(counts, args.beta, normalize=None, zero_count=args.zero_count)
        weights = class_balanced_weights(counts, args.beta, normalize=args.normalize, zero_count=args.zero_count)
    except (ValueError, TypeError) as error:
        raise UsageError(str(error).replace("zero_count='zero'", "--zero-count zero")) from None
    e_n = effective_number(counts, args.beta)
    normalize = args.normalize or "none"
    if args.json:
        record = {
            "beta": args.beta,
            "normalize": normalize,
            "counts": counts.tolist(),
            "effective_number": np.asarray(e_n, dtype=np.float64).tolist(),
            "raw_weights": raw.tolist(),
            "weights": weights.tolist(),
        }
        print(json.dumps(record, indent=1))
        return 0
    print(f"beta = {args.beta!r}, normalize = {normalize}, {len(counts)} classes, {counts.sum():g} samples")
    print("| class | n_i | E_n | raw weight 1/E_n | weight |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for i, (n, e, r, w) in enumerate(zip(counts, e_n, raw, weights, strict=True)):
        print(f"| {i} | {n:g} | {e:.10g} | {r:.10g} | {w:.10g} |")
    print(
        f"sum of weights = {weights.sum():.10g}; "
        f"training-set mean weight = {(counts * weights).sum() / counts.sum():.10g}"
    )
    return 0


def cmd_plot(args) -> int:
    from .demo.plots import plot_effective_number

    if args.output.suffix.lower() != ".png":
        raise UsageError(f"-o/--output: expected a .png file, got {args.output}")
    if not args.output.parent.exists():
        raise UsageError(f"-o/--output: no such folder: {args.output.parent}")
    if args.output.is_dir():
        raise UsageError(f"-o/--output: {args.output} is a folder")
    if args.counts is not None and not all(c > 0 for c in args.counts):
        raise UsageError("--counts: every count must be > 0 for this plot")
    path = plot_effective_number(args.beta, args.output, counts=args.counts, normalize=args.normalize)
    print(f"wrote {path}")
    return 0


TASK_MODELS = {"single-label": ("softmax", "mlp"), "multi-label": ("linear", "mlp")}


def cmd_demo(args) -> int:
    from .demo import backends
    from .demo.experiment import DEFAULT_FOCAL_BETA, DemoConfig, default_methods

    backend = args.backend or backends.default_backend()
    reason = backends.missing(backend)
    if reason:
        raise UsageError(f"--backend: {reason}")
    allowed = TASK_MODELS[args.task]
    if args.models is not None and any(m not in allowed for m in args.models):
        raise UsageError(f"--models: the {args.task} task trains {', '.join(allowed)}; got {','.join(args.models)}")
    overrides = {"backend": backend, "normalize": args.normalize}
    for name, value in (
        ("seeds", args.seeds),
        ("steps", args.steps),
        ("imbalances", args.imbalance),
        ("models", args.models),
    ):
        if value is not None:
            overrides[name] = tuple(value) if isinstance(value, list) else value
    if args.task == "multi-label":
        return _demo_multilabel(args, overrides)
    config = DemoConfig.quick(**overrides) if args.quick else DemoConfig(**overrides)
    if args.focal_beta is not None and args.focal_beta != DEFAULT_FOCAL_BETA:
        keys = {m.key.split("_beta")[0] if m.loss == "focal" else m.key for m in config.methods}
        config.methods = [
            m
            for m in default_methods(focal_beta=args.focal_beta)
            if (m.key.split("_beta")[0] if m.loss == "focal" else m.key) in keys
        ]
    _check_outputs(args)
    n_needed = config.n_max
    if any(m > n_needed for m in config.imbalances):
        raise UsageError(f"--imbalance: factors above n_max={n_needed} would leave classes with 0 samples")
    from .demo.run import main as run_demo

    run_demo(config, args.out, args.json, plots=not args.no_plots, progress=not args.no_progress)
    return 0


def _check_outputs(args) -> None:
    """Before the run: the folders it writes into (--out, and --json's) are made now, and must be writable;
    --json must not name a folder. A bad path is a usage error, not a failure after minutes of training."""
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out: {args.out} exists and is not a folder")
    if args.json is not None and args.json.is_dir():
        raise UsageError(f"--json: {args.json} is a folder")
    folders = [("--out", args.out)] + ([] if args.json is None else [("--json", args.json.parent)])
    for flag, folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UsageError(f"{flag}: cannot make the folder {folder} ({error.strerror or error})") from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UsageError(f"{flag}: the folder {folder} is not writable")


def _demo_multilabel(args, overrides: dict) -> int:
    from .demo.multilabel import MultiLabelConfig

    if args.focal_beta is not None:
        raise UsageError("--focal-beta: applies to the single-label task only")
    config = MultiLabelConfig.quick(**overrides) if args.quick else MultiLabelConfig(**overrides)
    _check_outputs(args)
    if any(m > config.n_max for m in config.imbalances):
        raise UsageError(f"--imbalance: factors above n_max={config.n_max} would leave classes with 0 samples")
    from .demo.run import main_multilabel

    main_multilabel(config, args.out, args.json, plots=not args.no_plots, progress=not args.no_progress)
    return 0


COMMANDS = {"demo": cmd_demo, "weights": cmd_weights, "plot": cmd_plot}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as error:
        print(f"cbloss {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"cbloss {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as other command-line tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush into the pipe
        return 1
    except (RuntimeError, OSError, ValueError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"cbloss {args.command}: error: {message}", file=sys.stderr)
        return 1
