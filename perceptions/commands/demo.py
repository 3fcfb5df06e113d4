"""`perceptions demo`: from nothing to a trained, evaluated model on a synthetic city (what `make demo` runs)."""
from __future__ import annotations

import argparse

HELP = "generate the synthetic city, train on all six studies, and print the test metrics (a few minutes on a CPU)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default="input/synthetic", metavar="DIR",
                        help="where the synthetic city is made (or reused, when made with the same parameters)")
    parser.add_argument("--out", default="outputs/runs", help="parent folder of the run folder")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars")


def run(args) -> int:
    from perceptions.train.demo import run_demo

    run_demo(data_dir=args.data_dir, out=args.out, device=args.device, progress=args.progress)
    return 0
