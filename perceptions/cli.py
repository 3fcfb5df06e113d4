"""`perceptions <command>`: thin entry points over the library.

Each command lives in `perceptions/commands/<name>.py` with `HELP`, `add_arguments(parser)` and
`run(args) -> int`. Command modules import heavy libraries (torch, timm) inside `run`, so `--help` is instant.
A `PerceptionsError` becomes one line on stderr and exit status 2; never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from perceptions.errors import PerceptionsError
from perceptions.logs import setup_logging
from perceptions.version import __version__

# Order is the order of the flow, as shown by `perceptions --help`.
COMMANDS = ("synth", "download", "score", "train", "evaluate", "predict", "explain", "map", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perceptions",
        description="Learn how people perceive places from street-level images (Place Pulse 2.0).",
    )
    parser.add_argument("--version", action="version", version=f"perceptions {__version__}")
    # Every command takes the logging options, after its name as users type them (`perceptions train -q`).
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    group.add_argument("-v", "--verbose", action="store_true", help="log debugging detail, with times")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"perceptions.commands.{name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP, parents=[common],
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
    setup_logging(-1 if args.quiet else 1 if args.verbose else 0)
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
