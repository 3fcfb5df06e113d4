"""`perceptions <command>`: thin entry points over the library.

Each command lives in `perceptions/commands/<name>.py` with `HELP`, `add_arguments(parser)` and
`run(args) -> int`. Command modules import heavy libraries (torch, timm) inside `run`, so `--help` is instant.
A `PerceptionsError` becomes one line on stderr and exit status 2; never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import subprocess
import sys
from pathlib import Path

from perceptions.errors import PerceptionsError
from perceptions.logs import setup_logging
from perceptions.version import __version__

# Order is the order of the flow, as shown by `perceptions --help`.
COMMANDS = ("synth", "download", "score", "check", "train", "evaluate", "predict", "aggregate", "explain", "map",
            "serve", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perceptions",
        description="Learn how people perceive places from street-level images (Place Pulse 2.0).",
    )
    parser.add_argument("--version", action=_VersionAction)
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


def version_text() -> str:
    """'perceptions 0.1.0', plus the short git revision when the package runs from a clone:
    'perceptions 0.1.0 (git 5bbf7f9)'."""
    revision = git_revision(Path(__file__).resolve().parents[1])
    return f"perceptions {__version__}" + (f" (git {revision})" if revision else "")


def git_revision(root: Path) -> str | None:
    """The short commit checked out in `root` when it is a git clone's top folder; None otherwise (an installed
    package: no .git next to it, so an enclosing repository is never mistaken for ours) or without git."""
    if not (root / ".git").exists():
        return None
    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


class _VersionAction(argparse.Action):
    """`--version`: asks git only when given, so other commands never pay for it."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs):
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0,
                         help="show the version (and the git revision in a clone) and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    setup_logging(-1 if args.quiet else 1 if args.verbose else 0)
    try:
        code = int(args._run(args) or 0)
    except PerceptionsError as exc:
        print(f"perceptions {args.command}: error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print(f"perceptions {args.command}: interrupted", file=sys.stderr)
        code = 130
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        leave_rank(code)
    return code


def leave_rank(code: int) -> None:
    """End a torchrun rank without the interpreter's teardown: there gloo's threads can abort a process whose
    work is done and whose group was destroyed ("terminate called without an active exception", SIGABRT; about
    one run in 60 on a busy machine), which torchrun reports as a failed run. Everything is written by now;
    the logs and standard streams are flushed first."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
