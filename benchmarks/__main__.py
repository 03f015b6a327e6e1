"""`python -m benchmarks [--quick] [--framework torch ...] [--repeats N] [--out DIR]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from .harness import FRAMEWORKS, run


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny shapes and few repeats: CI's smoke run")
    parser.add_argument("--framework", action="append", choices=FRAMEWORKS, help="default: all")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per variant (default 51; quick 5)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    repeats = args.repeats or (5 if args.quick else 51)
    run(args.framework or list(FRAMEWORKS), args.quick, repeats, warmup=2 if args.quick else 5, out=args.out)


if __name__ == "__main__":
    main()
