"""`python -m benchmarks [--quick] [--framework torch ...] [--device cpu|cuda|gpu] [--section speed ...]
[--rows single-label|multi-label] [--repeats N] [--compile-backend NAME] [--processes K] [--out DIR]
[--markdown FILE]`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from .harness import DEVICES, FRAMEWORKS, ROWS, SECTIONS, DeviceUnavailable, combine, run, write


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny shapes and few repeats: CI's smoke run")
    parser.add_argument("--framework", action="append", choices=FRAMEWORKS, help="default: all")
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="cpu",
        help="cpu (default), or cuda/gpu: each framework's GPU (an error if the framework sees none)",
    )
    parser.add_argument(
        "--section", action="append", choices=SECTIONS, help="what to measure (repeatable; default: all)"
    )
    parser.add_argument(
        "--rows",
        action="append",
        choices=ROWS,
        help="which rows (repeatable; default: both): single-label (the four losses on class indices) or "
        'multi-label (CB sigmoid and CB focal with multi_label="class" on multi-hot targets)',
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed samples per variant (default 51; quick 5)")
    parser.add_argument(
        "--overhead-calls",
        type=int,
        default=None,
        help="calls per timed sample at the (2, 3) input (default 50; quick 10)",
    )
    parser.add_argument(
        "--compile-backend",
        default="inductor",
        help="torch.compile backend of the compile section (default inductor; aot_eager traces without codegen)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="run the whole measurement in K fresh processes, one after the other, and report each cell's median "
        "ratio over them with their range (default 1)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--markdown", type=Path, default=None, help="also write the markdown report to this file")
    args = parser.parse_args(argv)
    if args.processes < 1:
        parser.error(f"--processes: at least 1, got {args.processes}")
    if args.processes > 1:
        _in_processes(args)
        return
    repeats = args.repeats or (5 if args.quick else 51)
    try:
        run(
            args.framework or list(FRAMEWORKS),
            args.quick,
            repeats,
            warmup=2 if args.quick else 5,
            out=args.out,
            device=args.device,
            compile_backend=args.compile_backend,
            sections=args.section or SECTIONS,
            overhead_calls=args.overhead_calls,
            markdown=args.markdown,
            rows=args.rows or ROWS,
        )
    except DeviceUnavailable as error:
        sys.exit(f"python -m benchmarks: error: {error}")


def _in_processes(args: argparse.Namespace) -> None:
    """The same command in ``args.processes`` fresh processes, each writing to ``out/process-<i>``, combined
    (:func:`benchmarks.harness.combine`) into ``out``."""
    words = ["--device", args.device, "--compile-backend", args.compile_backend]
    words += ["--quick"] if args.quick else []
    for flag, values in (("--framework", args.framework), ("--section", args.section), ("--rows", args.rows)):
        for value in values or []:
            words += [flag, value]
    for flag, value in (("--repeats", args.repeats), ("--overhead-calls", args.overhead_calls)):
        words += [flag, str(value)] if value is not None else []
    reports = []
    for i in range(args.processes):
        out = args.out / f"process-{i}"
        print(f"process {i + 1} of {args.processes}", flush=True)
        done = subprocess.run([sys.executable, "-m", "benchmarks", *words, "--out", str(out)])
        if done.returncode:
            sys.exit(done.returncode)
        reports.append(json.loads((out / "results.json").read_text()))
    write(combine(reports), args.out, args.markdown)


if __name__ == "__main__":
    main()
