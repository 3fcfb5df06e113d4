"""The vote store: one row per vote appended to a Place Pulse site-export TSV that `perceptions score` reads.

Columns `_id choice left right study_id timestamp voter_uniqueid` (the layout of the synthetic city's
votes.tsv): a random 24-hex id, left|right|equal, the two image ids, the PP2 study id, the UTC time to the
millisecond, the voter's name as given (cleaned) or "anonymous".

Why a vote is never half-written, and never mixed with another: each row is built whole first, then written
with one `os.write` on a file opened with O_APPEND, under a thread lock (this server) and an `flock` (any other
process appending to the same file), then fsynced before the vote is acknowledged. A row that did end without
its newline all the same (a full disk, a power cut) is left as the user's bytes, but the next row starts on a
line of its own, so it never glues two votes together.
"""
from __future__ import annotations

import logging
import os
import re
import secrets
import tempfile
import threading
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from perceptions.errors import PerceptionsError
from perceptions.files import fsync_folder
from perceptions.studies import STUDY_NAMES, study

log = logging.getLogger(__name__)

COLUMNS = ("_id", "choice", "left", "right", "study_id", "timestamp", "voter_uniqueid")
HEADER = "\t".join(COLUMNS) + "\n"
CHOICES = ("left", "right", "equal")
MAX_VOTER = 64
ANONYMOUS = "anonymous"
# Control characters (tabs and newlines among them) would break the row; a double quote would open a quoted
# field for the CSV reader `perceptions score` uses and swallow the rows after it.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f"\u2028\u2029]')


class VoteError(ValueError):
    """A vote that is refused (nothing is written): the message is one line for the voter."""


def clean_voter(name) -> str:
    """The voter's name as it is written: control characters and double quotes dropped, runs of spaces made
    one, at most MAX_VOTER characters (a longer one is refused, not cut); empty -> "anonymous"."""
    if name is None:
        return ANONYMOUS
    if not isinstance(name, str):
        raise VoteError("voter must be text")
    text = " ".join(_UNSAFE.sub(" ", name).split())
    if len(text) > MAX_VOTER:
        raise VoteError(f"voter name is {len(text)} characters long; at most {MAX_VOTER}")
    return text or ANONYMOUS


class VoteLog:
    """Appends votes to `path` (see the module docstring) and keeps a running count per study.

    At start-up it reads what the file holds already: `existing` is the table `read_votes` gives (empty when
    the file is new), `counts` the votes per study, `torn` whether the last row lacks its newline."""

    def __init__(self, path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self.torn = False
        self.written = 0  # by this server
        self.existing = self._read_existing()
        self.counts: Counter = Counter({s: 0 for s in STUDY_NAMES})
        self.counts.update(self.existing["study"].tolist() if len(self.existing) else [])

    # ------------------------------------------------------------------------------------------ start-up

    def _read_existing(self) -> pd.DataFrame:
        from perceptions.data.placepulse import read_votes

        empty = pd.DataFrame(columns=["study", "left", "right", "choice", "timestamp", "voter"])
        folder = self.path.parent
        if self.path.is_dir():
            raise PerceptionsError(f"--votes {self.path}: is a folder, not a file")
        if not folder.is_dir():
            raise PerceptionsError(f"--votes {self.path}: folder {folder} does not exist")
        if not self.path.exists():
            if not os.access(folder, os.W_OK):
                raise PerceptionsError(f"--votes {self.path}: cannot create a file in {folder} (permission denied)")
            return empty
        if not os.access(self.path, os.R_OK | os.W_OK):
            raise PerceptionsError(f"--votes {self.path}: not readable and writable (permission denied)")
        data = self.path.read_bytes()
        if not data:
            return empty
        if not data.strip():
            raise PerceptionsError(f"--votes {self.path}: holds only blank lines; remove it or give another --votes")
        first = data.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8-sig", errors="replace")
        if first.split("\t") != list(COLUMNS):
            raise PerceptionsError(f"--votes {self.path}: not a votes file in the layout serve appends to (its "
                                   f"header is {first[:80]!r}, not {HEADER.strip()!r}); give another --votes")
        if not data.endswith(b"\n"):
            self.torn = True
            cut = data.rfind(b"\n") + 1
            log.warning("%s: its last row is incomplete (a writer was stopped in the middle of it): the row is left "
                        "as it is and not counted, the next vote starts on a new line; remove that row before "
                        "`perceptions score` reads the file", self.path)
            data = data[:cut]
        if not data.split(b"\n", 1)[1].strip():
            return empty  # a header, no votes yet
        if not self.torn:
            return read_votes(self.path)
        # The whole rows alone, read by the project's reader from a copy (the file itself is left as it is).
        with tempfile.TemporaryDirectory(prefix="perceptions-votes-") as tmp:
            copy = Path(tmp) / self.path.name
            copy.write_bytes(data)
            try:
                return read_votes(copy)
            except PerceptionsError as exc:
                raise PerceptionsError(str(exc).replace(str(copy), str(self.path))) from None

    # ------------------------------------------------------------------------------------------ appending

    def append(self, study_name: str, left: str, right: str, choice: str, voter: str = ANONYMOUS) -> dict:
        """Write one vote (already checked by the caller: known study and ids, left != right, a valid choice,
        a cleaned voter) durably; returns the row as a dict."""
        if choice not in CHOICES or left == right or study_name not in STUDY_NAMES:
            raise VoteError("refused: a vote needs a known study, two different images and left, right or equal")
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        row = {"_id": secrets.token_hex(12), "choice": choice, "left": left, "right": right,
               "study_id": study(study_name).study_id, "timestamp": stamp, "voter_uniqueid": voter}
        values = [row[c] for c in COLUMNS]
        if any(_UNSAFE.search(v) for v in values):
            raise VoteError("refused: a field holds a tab, a newline or a quote")
        line = ("\t".join(values) + "\n").encode("utf-8")
        with self._lock:
            created = self._write(line)
            self.counts[study_name] += 1
            self.written += 1
        if created:
            fsync_folder(self.path.parent)  # the new file's name survives a power cut too
        return row

    def _write(self, line: bytes) -> bool:
        """Append `line` (with the header first into a new or empty file); True when the file was new."""
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by close
            size = os.fstat(fd).st_size
            if size == 0:
                data = HEADER.encode("utf-8") + line
            elif os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + line  # after a torn row: never glue this vote onto it
            else:
                data = line
            view = memoryview(data)
            while view:  # one write in practice; a short write (full disk) is finished or raises
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
            return size == 0
        finally:
            os.close(fd)

    def count(self, study_name: str | None = None) -> int:
        with self._lock:
            return self.counts[study_name] if study_name else sum(self.counts.values())
