"""Which images of a data folder can be read, checked once before training rather than met mid-epoch.

A bad file (empty, cut off, not an image, a decompression bomb, a symlink loop) is reported with its reason,
not turned into a blank training example. JPEGs are decoded at 1/8 scale (`open_rgb(min_side=16)`), the files
are spread over a few processes, and the result can be cached next to a key of the folder's state (every
path with its size and modification time), so a resumed run does not check the same files again.
"""
from __future__ import annotations

import hashlib
import os

import pandas as pd
from torch.utils.data import DataLoader, Dataset

from perceptions.data.images import ImageError, open_rgb
from perceptions.progress import Progress

COLUMNS = ["path", "reason"]


class _Check(Dataset):
    def __init__(self, paths):
        self.paths = [str(p) for p in paths]

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            open_rgb(self.paths[i], min_side=16)
            return ""
        except ImageError as e:
            return e.problem


def check_images(paths, workers: int | None = None, progress: bool | None = None) -> pd.DataFrame:
    """path, reason of every image `open_rgb` refuses, in input order. workers None: up to 8, one per core (no
    net runs meanwhile, so every core may decode)."""
    paths = [str(p) for p in paths]
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    workers = min(workers, max(0, len(paths) // 256))  # a small folder is quicker without starting processes
    loader = DataLoader(_Check(paths), batch_size=64, num_workers=workers, collate_fn=list)
    reasons = []
    with Progress(len(paths), "checking images", enabled=progress) as bar:
        for batch in loader:
            reasons.extend(batch)
            bar.update(len(batch))
    rows = [{"path": p, "reason": r} for p, r in zip(paths, reasons) if r]
    return pd.DataFrame(rows, columns=COLUMNS)


def folder_state(paths) -> str:
    """A key that changes when any image is added, removed, renamed, rewritten or touched."""
    h = hashlib.blake2b(digest_size=16)
    for p in sorted(str(p) for p in paths):
        try:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()
