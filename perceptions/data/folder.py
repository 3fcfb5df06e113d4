"""A Place Pulse-layout data folder read as a whole: labels (images joined to their scores), votes and truth.

The folder holds images/, qscores.tsv and, when present, votes (votes.tsv or votes.csv) and truth.csv (the
synthetic city). Training and `evaluate` both read a folder through `load_folder`, so they see the same table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from perceptions.errors import DataError, PerceptionsError

VOTE_FILES = ("votes.tsv", "votes.csv")
DEFAULT_SCORE_COLUMN = "trueskill.score"


@dataclass
class FolderData:
    labels: pd.DataFrame                 # build_labels table: path, location_id, city, lat, lon, <study>...
    votes: pd.DataFrame | None = None
    truth: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


def load_folder(data_dir, studies, score_column: str = DEFAULT_SCORE_COLUMN) -> FolderData:
    """Labels from images/ + qscores.tsv (as training builds them), votes and truth where the folder has them."""
    from perceptions.data.labels import build_labels
    from perceptions.data.placepulse import list_images, read_qscores, read_votes

    data = Path(data_dir)
    if not data.is_dir():
        raise PerceptionsError(f"data folder {data} does not exist")
    images_dir, qscores_path = data / "images", data / "qscores.tsv"
    if not images_dir.is_dir():
        raise PerceptionsError(f"{data} has no images/ folder (expected the PP2 layout: images/, qscores.tsv)")
    if not qscores_path.is_file():
        raise PerceptionsError(f"{data} has no qscores.tsv: score the votes first with `perceptions score`")
    images = list_images(images_dir)
    if images.empty:
        raise PerceptionsError(f"{images_dir} holds no images ({', '.join(('.jpg', '.jpeg', '.png'))})")
    labels, label_report = build_labels(images, read_qscores(qscores_path), studies, score_column=score_column)
    unmatched = label_report.get("images_without_scores", 0) or label_report.get("scores_without_images", 0)
    notes = [label_report["message"]] if unmatched and "message" in label_report else []
    votes_path = next((data / f for f in VOTE_FILES if (data / f).is_file()), None)
    votes = read_votes(votes_path) if votes_path else None
    truth = read_truth(data / "truth.csv") if (data / "truth.csv").is_file() else None
    return FolderData(labels=labels, votes=votes, truth=truth, notes=notes)


def read_truth(path) -> pd.DataFrame:
    """truth.csv of the synthetic city: location_id plus one column per study (other columns kept)."""
    try:
        truth = pd.read_csv(path, dtype={"location_id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(path, f"not a readable CSV ({str(e).strip().splitlines()[0] if str(e).strip() else e})") \
            from None
    if "location_id" not in truth.columns:
        raise DataError(path, "missing column location_id", row=1)
    return truth


def label_scorer(score_column: str = DEFAULT_SCORE_COLUMN):
    """votes -> Series by location_id, scored the way the labels were (the score_fn of the label-noise ceiling:
    pass it to evaluate_predictions). None for an unknown column (the ceiling then uses a win rate)."""
    from perceptions.data.placepulse import SCORE_COLUMNS
    from perceptions.data.scoring import score_votes

    method = {v: k for k, v in SCORE_COLUMNS.items()}.get(score_column)
    if method is None:
        return None  # unknown label method: the ceiling falls back to the win-rate scorer

    def score(votes: pd.DataFrame) -> pd.Series:
        scored = score_votes(votes, method=method)
        return scored.set_index(scored["location_id"].astype(str))[score_column]
    return score
