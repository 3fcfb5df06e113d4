"""`perceptions <command>`: thin entry points over the library.

Each command lives in `perceptions/commands/<name>.py` with `HELP`, `add_arguments(parser)` and
`run(args) -> int`. Command modules import heavy libraries (torch, timm) inside `run`, so `--help` is instant.
A `PerceptionsError` becomes one line on stderr and exit status 2; never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from perceptions import __version__
from perceptions.errors import PerceptionsError

# Order is the order of the flow, as shown by `perceptions --help`.
COMMANDS = ("synth", "download", "score", "train", "evaluate", "predict", "explain", "map", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perceptions",
        description="Learn how people perceive places from street-level images (Place Pulse 2.0).",
    )
    parser.add_argument("--version", action="version", version=f"perceptions {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"perceptions.commands.{name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except PerceptionsError as exc:
        print(f"perceptions {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"perceptions {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
