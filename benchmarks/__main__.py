"""`python -m benchmarks [--quick] [--framework torch ...] [--device cpu|cuda|gpu] [--section speed ...]
[--rows single-label|multi-label] [--repeats N] [--compile-backend NAME] [--out DIR] [--markdown FILE]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .harness import DEVICES, FRAMEWORKS, ROWS, SECTIONS, DeviceUnavailable, run


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
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--markdown", type=Path, default=None, help="also write the markdown report to this file")
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    main()
