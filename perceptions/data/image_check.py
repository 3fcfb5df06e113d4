"""Which images of a data folder can be read, checked once before training rather than met mid-epoch.

A bad file (empty, cut off, not an image, a decompression bomb, a symlink loop) is reported with its reason,
not turned into a blank training example. JPEGs are decoded at 1/8 scale (`open_rgb(min_side=16)`), the files
are spread over a few processes, and the result can be cached next to a key of the folder's state (every
path with its size and modification time), so a resumed run does not check the same files again.
The same pass finds placeholder pictures (a "no imagery" tile, a near-uniform frame): they are readable, so
training keeps them but lists them; `perceptions check --fix` leaves them out.
"""
from __future__ import annotations

import functools
import hashlib
import os

import numpy as np
import pandas as pd
from torch.utils.data import DataLoader, Dataset

from perceptions.data.images import CropTooLarge, ImageError, crop_bottom, open_rgb
from perceptions.errors import PerceptionsError
from perceptions.progress import Progress

COLUMNS = ["path", "reason"]
CHECK_SIDE = 16  # JPEGs are decoded at the strongest reduction that keeps both sides >= this (1/8 for PP2's)

# Placeholder pictures, measured on the image as the check decodes it (about 1/8 scale: 50x38 for a 400x300 JPEG,
# whose 8x8 block means show a placeholder's flat grey as well as any scale does; other files are box-reduced to
# about PLACEHOLDER_SMALL pixels a side):
#  - near-uniform: the grey levels' standard deviation below PLACEHOLDER_SD (a flat frame is ~0; the flattest of
#    2,400 synthetic scenes and the two real PP2 fixture images was 5.3);
#  - one colour: at least PLACEHOLDER_SHARE of the pixels within PLACEHOLDER_TOLERANCE levels (every channel) of
#    the median colour. Street View's grey "Sorry, we have no imagery here" tile is ~98% one grey (its icon and
#    text are small); among those 2,400 scenes and 2 real images the largest such share was 0.71.
PLACEHOLDER_SD = 2.0
PLACEHOLDER_SHARE = 0.90
PLACEHOLDER_TOLERANCE = 8
PLACEHOLDER_SMALL = 64


class _Scan(Dataset):
    def __init__(self, paths, fn):
        self.paths, self.fn = paths, fn

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.fn(self.paths[i])


def scan_images(paths, fn, workers: int | None = None, progress: bool | None = None,
                desc: str = "checking images") -> list:
    """[fn(path) for path in paths], in input order, spread over processes. fn: a module-level function (or a
    functools.partial of one) that never raises. workers None: up to 8, one per core (no net runs meanwhile, so
    every core may decode)."""
    paths = [str(p) for p in paths]
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    workers = min(workers, max(0, len(paths) // 256))  # a small folder is quicker without starting processes
    loader = DataLoader(_Scan(paths, fn), batch_size=64, num_workers=workers, collate_fn=list)
    results = []
    with Progress(len(paths), desc, enabled=progress) as bar:
        for batch in loader:
            results.extend(batch)
            bar.update(len(batch))
    return results


def placeholder_reason(image) -> str:
    """Why an RGB PIL image looks like a placeholder rather than a street ('' when it does not)."""
    factor = max(image.size) // PLACEHOLDER_SMALL
    if factor > 1:
        image = image.reduce(factor)
    pixels = np.asarray(image, dtype=np.int16)
    sd = float(pixels.mean(axis=2).std())
    if sd < PLACEHOLDER_SD:
        return f"near-uniform: grey-level sd {sd:.1f} (below {PLACEHOLDER_SD})"
    median = np.median(pixels.reshape(-1, 3), axis=0)
    share = float((np.abs(pixels - median).max(axis=2) <= PLACEHOLDER_TOLERANCE).mean())
    if share >= PLACEHOLDER_SHARE:
        return f"one colour {tuple(int(v) for v in median)} covers {share:.0%} of it (a 'no imagery' tile?)"
    return ""


def _problems(path: str, crop: int = 0) -> tuple[str, str, str]:
    """(why open_rgb refuses the file, why --crop-bottom `crop` does not fit it, why it looks like a
    placeholder); '' for none."""
    try:
        image = open_rgb(path, min_side=CHECK_SIDE)
    except ImageError as e:
        return e.problem, "", ""
    try:
        crop_bottom(image, crop)
    except CropTooLarge as e:
        return "", e.problem, ""
    return "", "", placeholder_reason(image)


def inspect_images(paths, workers: int | None = None, progress: bool | None = None,
                   crop_bottom: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(unreadable, placeholders): path, reason of every image `open_rgb` refuses and of every readable one that
    looks like a placeholder, in input order, from one parallel pass. crop_bottom: an image no taller than that
    many rows is an error (PerceptionsError, one line naming the first): training with `--crop-bottom` would
    have nothing left of it."""
    paths = [str(p) for p in paths]
    found = scan_images(paths, functools.partial(_problems, crop=int(crop_bottom)), workers, progress)
    too_short = [(p, c) for p, (_, c, _) in zip(paths, found) if c]
    if too_short:
        more = f" (and {len(too_short) - 1} more image(s))" if len(too_short) > 1 else ""
        raise PerceptionsError(f"--crop-bottom {crop_bottom} is too large: {too_short[0][0]} is "
                               f"{too_short[0][1]}{more}")
    return tuple(pd.DataFrame([{"path": p, "reason": f[col]} for p, f in zip(paths, found) if f[col]],
                              columns=COLUMNS) for col in (0, 2))


def check_images(paths, workers: int | None = None, progress: bool | None = None,
                 crop_bottom: int = 0) -> pd.DataFrame:
    """path, reason of every image `open_rgb` refuses, in input order (see inspect_images)."""
    return inspect_images(paths, workers, progress, crop_bottom)[0]


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
