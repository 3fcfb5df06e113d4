"""One logging path: the library logs with `logging.getLogger(__name__)`; the CLI installs the one handler.

Lines are plain (`message`, no level or time stamp unless -v), so a log file on a cluster reads like the
terminal. Under torchrun only rank 0 speaks, except for warnings and errors, which every rank reports.
"""
from __future__ import annotations

import logging
import os
import sys

ROOT = "perceptions"


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of each record (it may be replaced after set-up: pytest's
    capture, a notebook's redirection), never to a stream that has since been closed."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


class _MainRankOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or os.environ.get("RANK", "0") == "0"


def setup_logging(verbosity: int = 0, stream=None) -> logging.Handler:
    """Route the library's log records to `stream` (default stderr): INFO by default, WARNING with
    verbosity < 0 (--quiet), DEBUG with timestamps with verbosity > 0 (-v). Replaces an earlier handler of
    ours, so calling it twice (tests, notebooks) does not print every line twice. Records still propagate, so
    an application's own root handler (or pytest's caplog) sees them too."""
    logger = logging.getLogger(ROOT)
    for old in [h for h in logger.handlers if getattr(h, "_perceptions", False)]:
        logger.removeHandler(old)
    handler = logging.StreamHandler(stream) if stream is not None else _CurrentStderr()
    handler._perceptions = True
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s" if verbosity > 0 else "%(message)s"
    handler.setFormatter(logging.Formatter(fmt, datefmt="%H:%M:%S"))
    handler.addFilter(_MainRankOnly())
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO)
    return handler
