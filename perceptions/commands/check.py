"""`perceptions check DATA`: the data doctor for a Place Pulse-format folder (see perceptions/data/check.py).

Exit status: 0 when nothing was found that would hurt training, 1 when something was (placeholder pictures,
duplicate location ids, self votes, duplicate votes), 2 for bad input (not a Place Pulse-format folder, a
--out or --fix that would overwrite something).
"""
from __future__ import annotations

import argparse

HELP = "check a Place Pulse-format folder for problems (placeholders, duplicates, unreadable images, bad votes)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("exit status: 0 when nothing was found that would hurt training, 1 when something was "
                     "(placeholder pictures, duplicate location ids, self votes, duplicate votes), 2 for bad input")
    parser.add_argument("data", metavar="DATA", help="folder with images/, qscores.tsv and votes.tsv or votes.csv")
    parser.add_argument("--out", metavar="FILE", help="write every problem to this CSV: kind, file, row, id, detail")
    parser.add_argument("--fix", metavar="DIR",
                        help="write a cleaned copy to DIR for `train --data DIR`: links to the good images, "
                             "qscores.tsv and votes without the bad rows; DATA is never touched")
    parser.add_argument("--overwrite", action="store_true", help="replace --out, or a cleaned copy in --fix")
    parser.add_argument("--workers", type=int, help="image-reading processes; None: one per core, up to 8")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction,
                        help="progress bar (default: on a terminal; in a log file one plain line every 30 s)")


def run(args) -> int:
    from pathlib import Path

    from perceptions.data.check import check_folder
    from perceptions.data.check_fix import prepare_fix_dir, write_fixed
    from perceptions.errors import PerceptionsError
    from perceptions.files import atomic_write

    if args.out and Path(args.out).exists() and not args.overwrite:
        raise PerceptionsError(f"{args.out} already exists (use --overwrite to replace it)")
    if args.fix:
        prepare_fix_dir(args.fix, args.data, args.overwrite)  # refuse before the long check, not after
    report = check_folder(args.data, workers=args.workers, progress=args.progress)
    print(report.text())
    if args.out:
        with atomic_write(args.out, newline="") as f:
            report.problems.to_csv(f, index=False)
        print(f"{len(report.problems):,} problem row(s) -> {args.out}")
    if args.fix:
        done = write_fixed(report, args.fix, overwrite=args.overwrite)
        votes = f", {done['votes']:,} votes ({done['votes_left_out']:,} left out)" if "votes" in done else ""
        print(f"cleaned copy -> {done['folder']}: {done['images']:,} images ({done['images_left_out']:,} left "
              f"out), {done['score_rows']:,} score rows ({done['score_rows_left_out']:,} left out){votes}; "
              f"train on it with `perceptions train --data {done['folder']}`")
    return report.exit_status
