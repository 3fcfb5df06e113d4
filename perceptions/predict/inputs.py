"""What `predict` reads: the images named by files, folders (searched recursively) and .txt/.csv lists.

Pure file-system helpers, no torch, so they are quick to test and reuse.
"""
from __future__ import annotations

import csv
import os

from perceptions.errors import DataError, PerceptionsError

LIST_EXTENSIONS = (".txt", ".csv", ".tsv")


class ImageSources:
    """Where a predict job's images and their locations come from: files, folders and lists (`discover`), with
    the location parsed from Place Pulse-style names, which the rows already carry (`annotate` adds nothing).
    `perceptions.places.PlaceSources` extends it with metadata tables and EXIF GPS, and may carry a `views`
    hook that cuts some files (panoramas) into several views (`predict.pipeline.iter_batches`)."""

    views = None

    def discover(self, inputs) -> list[str]:
        return discover_images(inputs)

    def annotate(self, rows):
        """The finished rows, completed before they are written -> (rows, notes for the summary)."""
        return rows, {}


def image_extensions() -> tuple[str, ...]:
    from perceptions.data.placepulse import IMAGE_EXTENSIONS

    return tuple(e.lower() for e in IMAGE_EXTENSIONS)


def discover_images(inputs) -> list[str]:
    """Expand files, folders (recursive) and .txt/.csv lists into a list of image paths, in input order.

    An input that does not exist is fatal (the user typed it); a path inside a list that does not exist is
    kept, so it is reported as skipped at read time. A path met twice is kept once (first place).
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found: list[str] = []
    for item in inputs:
        item = os.fspath(item)
        if os.path.isdir(item):
            found.extend(walk_images(item))
        elif os.path.isfile(item):
            if item.lower().endswith(LIST_EXTENSIONS):
                found.extend(read_path_list(item))
            else:
                found.append(item)  # an explicitly named file is tried even with an odd extension
        else:
            raise PerceptionsError(f"{item}: no such file or folder")
    unique = list(dict.fromkeys(found))
    if not unique:
        names = ", ".join(os.fspath(i) for i in inputs) or "(nothing given)"
        raise PerceptionsError(f"no images found in {names} (looked for {'/'.join(image_extensions())})")
    return unique


def walk_images(folder: str) -> list[str]:
    """Image files under `folder`, recursively, sorted; follows symlinked folders but visits each real folder once
    (a symlink loop ends instead of hanging)."""
    extensions = image_extensions()
    seen_dirs: set[tuple[int, int]] = set()
    images: list[str] = []

    def visit(directory: str) -> None:
        try:
            st = os.stat(directory)
        except OSError:
            return
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            return
        seen_dirs.add(key)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            try:
                if entry.is_dir():  # follows symlinks; `seen_dirs` stops loops
                    visit(entry.path)
                elif entry.name.lower().endswith(extensions) and entry.is_file():
                    images.append(entry.path)
            except OSError:
                continue

    visit(folder)
    return images


def read_path_list(list_path: str) -> list[str]:
    """Paths from a list file: a CSV/TSV with a `path` column, or one path per line.

    Relative paths are taken relative to the list's folder (falling back to the working folder when only
    that one exists), so a list travels with its images.
    """
    with open(list_path, encoding="utf-8-sig", newline="") as f:
        text = f.read()
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    entries = None
    if list_path.lower().endswith((".csv", ".tsv")):
        delimiter = "\t" if list_path.lower().endswith(".tsv") else ","
        header = next(csv.reader([lines[0]], delimiter=delimiter))
        columns = [h.strip().lower() for h in header]
        if "path" in columns:
            col = columns.index("path")
            entries = []
            for row_no, row in enumerate(csv.reader(lines[1:], delimiter=delimiter), start=2):
                if len(row) <= col:
                    raise DataError(list_path, "row has no value in the 'path' column", row=row_no)
                entries.append(row[col])
        elif len(columns) > 1:
            raise DataError(list_path, "a CSV list needs a 'path' column (or give one path per line)")
    if entries is None:
        entries = [line for line in lines if not line.lstrip().startswith("#")]
    base = os.path.dirname(list_path)
    return [resolve_listed(e.strip(), base) for e in entries if e.strip()]


def resolve_listed(entry: str, base) -> str:
    """A path named in a list or table: as given when absolute, else beside the list (or as given, when only
    that exists)."""
    if os.path.isabs(entry):
        return entry
    beside_list = os.path.join(base, entry)
    if os.path.exists(beside_list) or not os.path.exists(entry):
        return beside_list
    return entry
