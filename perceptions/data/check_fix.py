"""`perceptions check --fix DIR`: a cleaned copy of a Place Pulse-format folder that `train --data DIR` reads,
made without copying an image and without touching the originals.

  DIR/images/         a symbolic link to each good original image, at the same path under images/
  DIR/qscores.tsv     the original rows whose location id keeps a good image (columns and values as they were)
  DIR/votes.tsv|.csv  the original rows less self votes, the second copies of duplicate votes and votes that
                      name a location id with no good image
  DIR/truth.csv       copied when the folder has one (the synthetic city)

Left out: every image `check` lists (placeholders, all the files of a duplicated location id, since nobody can
tell which picture the votes were about, unreadable files, files without a PP2 name or without scores). The
scores stay those computed from all the original votes; `perceptions score --votes DIR/votes.tsv --out
DIR/qscores.tsv --overwrite` scores the cleaned votes instead. Running `check` on DIR finds no problem.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from perceptions.errors import PerceptionsError
from perceptions.files import atomic_path

# Image problems that leave the image out of the cleaned copy (every image kind of data/check.py).
IMAGE_KINDS = ("placeholder_image", "duplicate_location", "unreadable_image", "bad_image_name",
               "image_without_scores")


def prepare_fix_dir(fix_dir, data_dir, overwrite: bool = False) -> Path:
    """Refuse a --fix folder that is the data folder or inside it, or that holds anything but an earlier cleaned
    copy (unless --overwrite, and even then only links are ever removed). Called before the long check."""
    fix, data = Path(fix_dir).resolve(), Path(data_dir).resolve()
    if fix == data or data in fix.parents:
        raise PerceptionsError(f"--fix {fix_dir}: choose a folder outside {data_dir} (the originals are never "
                               "touched)")
    if fix.exists() and not fix.is_dir():
        raise PerceptionsError(f"--fix {fix_dir}: exists and is not a folder")
    if fix.is_dir() and any(fix.iterdir()):
        if not overwrite:
            raise PerceptionsError(f"--fix {fix_dir}: folder exists and is not empty (use --overwrite to replace "
                                   "a cleaned copy written before)")
        _links_only(fix / "images")
    return fix


def _links_only(folder: Path) -> None:
    """Make sure `folder` holds nothing but links and folders (an earlier cleaned copy) before it is replaced."""
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise PerceptionsError(f"{folder}: not a folder of links written by --fix; refusing to replace it")
    for root, _, files in os.walk(folder):
        for name in files:
            if not os.path.islink(os.path.join(root, name)):
                raise PerceptionsError(f"{folder}: holds {os.path.join(root, name)}, which is not a link written "
                                       "by --fix; choose another --fix folder")


def _remove_links(folder: Path) -> None:
    _links_only(folder)
    for root, dirs, files in os.walk(folder, topdown=False):
        for name in files:
            os.unlink(os.path.join(root, name))
        for name in dirs:
            os.rmdir(os.path.join(root, name))
    folder.rmdir()


def write_fixed(report, fix_dir, overwrite: bool = False) -> dict:
    """Write the cleaned copy of `report.data` into fix_dir; returns what was kept and left out."""
    fix = prepare_fix_dir(fix_dir, report.data, overwrite)
    fix.mkdir(parents=True, exist_ok=True)
    problems = report.problems
    bad_paths = set(problems.loc[problems["kind"].isin(IMAGE_KINDS), "file"])
    images = report.images[~report.images["path"].isin(bad_paths)]
    good_ids = set(images["location_id"].dropna())

    staging = fix / f".images.{os.getpid()}.tmp"
    if staging.exists():
        _remove_links(staging)
    try:
        for path in images["path"]:  # list_images walked DATA/images: every path lies under it
            target = staging / os.path.relpath(path, report.data / "images")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.abspath(path), target)
    except OSError as e:
        raise PerceptionsError(f"--fix {fix_dir}: cannot make links to the images there ({e.strerror or e})") \
            from None
    if (fix / "images").exists():
        _remove_links(fix / "images")
    staging.rename(fix / "images")

    keep_scores = report.qscores["location_id"].isin(good_ids).to_numpy()
    _filtered_copy(report.qscores_path, fix / "qscores.tsv", keep_scores)
    summary = {"images": len(images), "images_left_out": len(report.images) - len(images),
               "score_rows": int(keep_scores.sum()), "score_rows_left_out": int((~keep_scores).sum())}
    if report.votes is not None:
        votes = report.votes
        keep = np.array(votes["left"].isin(good_ids) & votes["right"].isin(good_ids), dtype=bool)
        bad_rows = problems.loc[problems["kind"].isin(["self_vote", "duplicate_vote"]), "row"]
        keep[np.asarray(bad_rows, dtype=np.int64) - 2] = False
        _filtered_copy(report.votes_path, fix / report.votes_path.name, keep)
        summary.update(votes=int(keep.sum()), votes_left_out=int((~keep).sum()))
    if (report.data / "truth.csv").is_file():
        with atomic_path(fix / "truth.csv") as tmp:
            shutil.copyfile(report.data / "truth.csv", tmp)
    summary["folder"] = str(fix_dir)
    return summary


def _filtered_copy(source, target, keep: np.ndarray) -> None:
    """The rows of a CSV/TSV table where `keep` (one flag per data row, as the readers number them), written
    with the original's separator, columns and cell text."""
    from perceptions.data.placepulse import _read_table  # the readers' own parse, so rows line up with theirs

    with open(source, encoding="utf-8-sig") as fh:
        header = next((line for line in fh if line.strip()), "")
    table = _read_table(source)
    if len(table) != len(keep):
        raise PerceptionsError(f"{source}: read {len(table)} rows where the check saw {len(keep)}")
    table.columns = ["" if str(c).startswith("Unnamed: ") else c for c in table.columns]
    with atomic_path(target) as tmp:
        table[keep].to_csv(tmp, sep="\t" if "\t" in header else ",", index=False)
