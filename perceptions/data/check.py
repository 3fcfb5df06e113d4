"""The data doctor behind `perceptions check`: what is wrong with a Place Pulse-format folder, problem by problem.

A folder holds images/, qscores.tsv and usually votes (votes.tsv or votes.csv), as `load_folder` reads it. Each
problem is one row of a table (kind, file, row, id, detail; rows numbered as a spreadsheet shows them, the
header being row 1). Kinds come in two groups:

  would hurt training (exit status 1): training would learn from them as if they were good data, or stop
    placeholder_image     a "no imagery" tile or a near-uniform picture (thresholds: data/image_check.py)
    duplicate_location    two or more image files with one location id (one score, several pictures)
    self_vote             a vote comparing an image with itself (`train` refuses the votes file)
    duplicate_vote        a second copy of a vote: same voter, pair, study, choice and timestamp; only checked
                          when the file has voters or timestamps (without them a repeat cannot be told from
                          another person's identical vote, as in Kaggle's votes.csv)
  left out by training itself (listed; exit status 0 when they are all there is)
    unreadable_image      a file `open_rgb` refuses (cut off, empty, not an image...)
    bad_image_name        a file not named {lat}_{lon}_{location_id}_{City}.jpg, so it has no location id
    image_without_scores  an image whose location id has no row in qscores.tsv
    scores_without_image  a qscores.tsv row whose location id has no image
    vote_missing_image    a vote naming a location id that has no image in the folder

Vote density and the share of ties are compared with Place Pulse 2.0's published figures (notes only). What the
readers themselves refuse (a second score row for one image and study, a choice that is not left, right or equal,
an unknown study) stops the check with one line naming the file and row, as it stops training: fix it by hand.
Images are read once, in parallel, by the image check training runs (`image_check.inspect_images`: decoded at
1/8 scale for a 400x300 JPEG), which finds the unreadable files and the placeholders in one pass.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from perceptions.data.folder import VOTE_FILES
from perceptions.errors import PerceptionsError

# Place Pulse 2.0's published figures (../shared/design/placepulse.md, "Scale": Dubey et al., "Deep Learning the
# City", ECCV 2016, and one re-download's counts): about 21 appearances per image over the six studies, so about
# 3.5 votes per image per study; 161,882 ties among 1,208,808 comparisons.
PP2_VOTES_PER_IMAGE_PER_STUDY = 3.5
PP2_TIE_SHARE = 161_882 / 1_208_808  # 13.4%

COLUMNS = ["kind", "file", "row", "id", "detail"]
HURTS = {"placeholder_image": "placeholder pictures", "duplicate_location": "duplicate location ids",
         "self_vote": "self votes", "duplicate_vote": "duplicate votes"}
LEFT_OUT = {"unreadable_image": "unreadable images", "bad_image_name": "images without a PP2 name",
            "image_without_scores": "images without scores", "scores_without_image": "score rows without an image",
            "vote_missing_image": "votes naming a missing image"}
KINDS = {**HURTS, **LEFT_OUT}


@dataclass
class CheckReport:
    data: Path
    problems: pd.DataFrame                                 # COLUMNS, one row per problem
    images: pd.DataFrame                                   # list_images table of images/
    qscores: pd.DataFrame                                  # read_qscores, file order
    votes: pd.DataFrame | None                             # read_votes(keep_self_votes=True), file order
    qscores_path: Path
    votes_path: Path | None
    counts: dict = field(default_factory=dict)             # what the folder holds
    density: dict = field(default_factory=dict)            # votes per image per study, tie share
    notes: list[str] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return int((self.problems["kind"] == kind).sum())

    @property
    def hurting(self) -> int:
        return int(self.problems["kind"].isin(list(HURTS)).sum())

    @property
    def exit_status(self) -> int:
        """0: nothing that would hurt training; 1: problems that would (see the module docstring)."""
        return 1 if self.hurting else 0

    def text(self) -> str:
        """The one-screen report: what the folder holds, counts per kind, vote figures, a verdict line."""
        c = self.counts
        lines = [f"{self.data}: {c['images']:,} images ({c['location_ids']:,} location ids), "
                 f"{c['score_rows']:,} score rows in qscores.tsv, "
                 + (f"{c['votes']:,} votes in {self.votes_path.name}" if self.votes_path else "no votes file")]
        for title, kinds in (("would hurt training", HURTS), ("left out by training itself", LEFT_OUT)):
            lines.append(f"  {title}:")
            lines += [f"    {label:<30} {self.count(kind):>8,}" for kind, label in kinds.items()]
        d = self.density
        if d:
            lines.append(f"  votes per image per study {d['votes_per_image']:.1f} ({d['spread']}); Place Pulse 2.0: "
                         f"about {PP2_VOTES_PER_IMAGE_PER_STUDY}")
            lines.append(f"  ties {d['tie_share']:.1%} of votes; Place Pulse 2.0: {PP2_TIE_SHARE:.1%}")
        lines += [f"  note: {n}" for n in self.notes]
        lines.append(self.verdict())
        return "\n".join(lines)

    def verdict(self) -> str:
        left_out = len(self.problems) - self.hurting
        also = f" ({left_out:,} more that training leaves out itself)" if left_out else ""
        if self.hurting:
            return (f"verdict: {self.hurting:,} problem(s) would hurt training{also}; --out FILE lists them, "
                    "--fix DIR writes a cleaned copy to train on")
        if left_out:
            return f"verdict: ready to train; {left_out:,} problem(s) that training leaves out itself"
        return "verdict: no problem found; ready to train"


def check_folder(data_dir, workers: int | None = None, progress: bool | None = None) -> CheckReport:
    """Read a Place Pulse-format folder and find every problem (see the module docstring)."""
    from perceptions.data.image_check import inspect_images
    from perceptions.data.placepulse import list_images, read_qscores, read_votes

    data = Path(data_dir)
    expected = "expected a Place Pulse-format folder: images/, qscores.tsv and votes.tsv or votes.csv"
    if not data.is_dir():
        raise PerceptionsError(f"{data}: no such folder ({expected})")
    missing = [name for name, ok in (("images/", (data / "images").is_dir()),
                                     ("qscores.tsv", (data / "qscores.tsv").is_file())) if not ok]
    if missing:
        raise PerceptionsError(f"{data}: has no {' and no '.join(missing)} ({expected})")
    images = list_images(data / "images")
    qscores_path = data / "qscores.tsv"
    qscores = read_qscores(qscores_path)
    votes_path = next((data / f for f in VOTE_FILES if (data / f).is_file()), None)
    votes = read_votes(votes_path, keep_self_votes=True) if votes_path is not None else None

    unreadable, placeholders = inspect_images(images["path"], workers, progress)
    parts = [name_problems(images), image_problems(images, unreadable, placeholders),
             score_problems(images, qscores, qscores_path)]
    notes = []
    if votes is not None:
        parts.append(vote_problems(votes, images, votes_path))
        if not {"voter", "timestamp"} & set(votes.columns):
            notes.append(f"{votes_path.name} has no voters or timestamps: duplicate votes cannot be told from "
                         "identical votes of different people, so they were not checked")
    else:
        notes.append("no votes.tsv or votes.csv: votes were not checked (training needs them for --loss ranking)")
    problems = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) \
        else pd.DataFrame(columns=COLUMNS)
    ids = images["location_id"].dropna()
    counts = {"images": len(images), "location_ids": int(ids.nunique()), "score_rows": len(qscores),
              "votes": 0 if votes is None else len(votes)}
    density = vote_density(votes, int(ids.nunique())) if votes is not None and len(votes) else {}
    notes += density_notes(density)
    return CheckReport(data=data, problems=problems[COLUMNS], images=images, qscores=qscores, votes=votes,
                       qscores_path=qscores_path, votes_path=votes_path, counts=counts, density=density,
                       notes=notes)


# ------------------------------------------------------------------------------------------------- images

def _rows(kind: str, files, rows, ids, details) -> pd.DataFrame:
    """Problem rows of one kind; each field a sequence (one value per problem) or one value for all."""
    values = {"file": files, "row": rows, "id": ids, "detail": details}
    n = next(len(v) for v in values.values() if not isinstance(v, str))
    table = pd.DataFrame({k: (np.asarray(v, dtype=object) if not isinstance(v, str) else [v] * n)
                          for k, v in values.items()})
    table.insert(0, "kind", kind)
    return table


def name_problems(images: pd.DataFrame) -> pd.DataFrame:
    bad = images[images["location_id"].isna()]
    return _rows("bad_image_name", bad["path"], "", "",
                 "not named {lat}_{lon}_{location_id}_{City}.jpg: no location id to join its scores")


def image_problems(images: pd.DataFrame, unreadable: pd.DataFrame, placeholders: pd.DataFrame) -> pd.DataFrame:
    """Duplicate location ids, unreadable files and placeholders (path, reason tables of inspect_images)."""
    parts = []
    ids = images["location_id"]
    dup = images[ids.notna() & ids.duplicated(keep=False)]
    if len(dup):
        names = [Path(p).name for p in dup["path"]]
        group = pd.Series(names).groupby(dup["location_id"].to_numpy()).agg(list).to_dict()
        others = [", ".join(n for n in group[i] if n != name) for i, name in zip(dup["location_id"], names)]
        parts.append(_rows("duplicate_location", dup["path"], "", dup["location_id"],
                           [f"location id also in {o}" for o in others]))
    id_of = images.set_index("path")["location_id"]
    for kind, found in (("unreadable_image", unreadable), ("placeholder_image", placeholders)):
        if len(found):
            parts.append(_rows(kind, found["path"], "", found["path"].map(id_of).fillna(""), found["reason"]))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)


def score_problems(images: pd.DataFrame, qscores: pd.DataFrame, path) -> pd.DataFrame:
    """Images whose location id has no score row, and score rows whose location id has no image."""
    image_ids = set(images["location_id"].dropna())
    score_ids = set(qscores["location_id"])
    unscored = images[images["location_id"].notna() & ~images["location_id"].isin(score_ids)]
    parts = [_rows("image_without_scores", unscored["path"], "", unscored["location_id"],
                   "no row in qscores.tsv for this location id")]
    orphan = np.flatnonzero(~qscores["location_id"].isin(image_ids).to_numpy())
    parts.append(_rows("scores_without_image", str(path), orphan + 2, qscores["location_id"].iloc[orphan].to_numpy(),
                       [f"{s} score of a location id that has no image" for s in qscores["study"].iloc[orphan]]))
    return pd.concat(parts, ignore_index=True)


# -------------------------------------------------------------------------------------------------- votes

# What makes two votes the same vote: every field the file records about the act of voting (a vote's own `_id`
# is left out, so a vote saved twice under two ids is still found).
DUPLICATE_KEY = ("voter", "study", "left", "right", "choice", "timestamp")


def vote_problems(votes: pd.DataFrame, images: pd.DataFrame, path) -> pd.DataFrame:
    """Votes naming a location id without an image, self votes and exact duplicates; votes as read_votes
    gives them (keep_self_votes=True), in file order."""
    path, parts = str(path), []
    row = np.arange(len(votes)) + 2
    have = set(images["location_id"].dropna())
    left, right = votes["left"].astype(str), votes["right"].astype(str)
    lost_left, lost_right = ~left.isin(have).to_numpy(), ~right.isin(have).to_numpy()
    lost = np.flatnonzero(lost_left | lost_right)
    if lost.size:
        sides = [" and ".join(f"{side} {loc}" for side, loc, gone in
                              (("left", left.iat[i], lost_left[i]), ("right", right.iat[i], lost_right[i])) if gone)
                 for i in lost]
        parts.append(_rows("vote_missing_image", path, row[lost],
                           np.where(lost_left[lost], left.to_numpy()[lost], right.to_numpy()[lost]),
                           [f"no image for {s}" for s in sides]))
    same = np.flatnonzero((left == right).to_numpy())
    if same.size:
        parts.append(_rows("self_vote", path, row[same], left.to_numpy()[same],
                           "compares an image with itself"))
    key = [c for c in DUPLICATE_KEY if c in votes.columns]
    if {"voter", "timestamp"} & set(key):
        group = votes.groupby(key, sort=False, dropna=False).ngroup().to_numpy()
        repeat = np.flatnonzero(pd.Series(group).duplicated().to_numpy())
        if repeat.size:
            first = pd.Series(row).groupby(group).transform("first").to_numpy()
            parts.append(_rows("duplicate_vote", path, row[repeat], left.to_numpy()[repeat],
                               [f"same {', '.join(key)} as row {first[i]}" for i in repeat]))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)


def vote_density(votes: pd.DataFrame, n_images: int) -> dict:
    """Votes per image per study (each vote shows two images: 2 x votes / images, per study, then the mean
    over the studies voted on) and the share of ties, the two figures Place Pulse 2.0 publishes."""
    per_study = votes.groupby("study", sort=False).size()
    per_image = {s: 2 * int(n) / max(1, n_images) for s, n in per_study.items()}
    low, high = min(per_image.values()), max(per_image.values())
    spread = f"{len(per_image)} {'study' if len(per_image) == 1 else 'studies'}" + \
        (f", {low:.1f} to {high:.1f}" if f"{low:.1f}" != f"{high:.1f}" else "")
    return {"votes_per_image": float(np.mean(list(per_image.values()))), "per_study": per_image,
            "spread": spread, "tie_share": float((votes["choice"] == "equal").mean())}


def density_notes(density: dict) -> list[str]:
    """Figures far from Place Pulse's: under half its density, or a tie share outside half to twice its."""
    if not density:
        return []
    notes = []
    if density["votes_per_image"] < PP2_VOTES_PER_IMAGE_PER_STUDY / 2:
        notes.append("fewer than half Place Pulse's votes per image: the scores will be noisier than PP2's")
    if not PP2_TIE_SHARE / 2 <= density["tie_share"] <= 2 * PP2_TIE_SHARE:
        notes.append("the share of ties is far from Place Pulse's: is the choice column read right?")
    return notes
