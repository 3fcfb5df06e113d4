"""Everything a run needs from the data folder, checked before anything is written: labels, split, scaling,
1..10 targets, vote pairs, truth.

Bad input stops here with one clear line (no images, no scores, a study nobody rated, too few images to split).
The split and the `max_images` cut are the ones `perceptions evaluate` rebuilds from the model package, so
`evaluate` scores exactly the images this run held out.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from perceptions.data.datasets import PairArrays, vote_pairs
from perceptions.errors import PerceptionsError
from perceptions.studies import parse_studies
from perceptions.train.config import TrainConfig

SPLIT_NAMES = ("train", "val", "test")
SKIPPED_FILE = "skipped_images.csv"


@dataclass
class TrainData:
    studies: list[str]
    table: pd.DataFrame          # one row per labelled image: path, location_id, city, lat, lon, <study> (raw)
    split: np.ndarray            # "train" / "val" / "test" per row of table
    scaling: object              # perceptions.data.labels.Scaling, fitted on the training rows
    targets: np.ndarray          # (N, S) float32, 1..10, NaN where unrated
    votes: pd.DataFrame | None   # all votes of the folder (study, left, right, choice), if it has any
    truth: pd.DataFrame | None   # truth.csv of a synthetic city
    notes: list[str]
    skipped: pd.DataFrame | None = None  # unreadable images left out: path, reason (-> SKIPPED_FILE)

    def rows(self, name: str) -> np.ndarray:
        return np.flatnonzero(self.split == name)

    def pairs(self, name: str) -> PairArrays:
        """Votes whose two images both lie in split `name`, as row positions into `table`."""
        rows = self.rows(name)
        if self.votes is None or rows.size == 0:
            return PairArrays([], [], [], [])
        local = vote_pairs(self.votes, self.table["location_id"].to_numpy()[rows], self.studies)
        return PairArrays(rows[local.left], rows[local.right], local.study, local.left_wins)

    def split_spec(self, config: TrainConfig) -> dict:
        return {"method": config.split, "seed": config.seed, "val_frac": config.val_frac,
                "test_frac": config.test_frac}

    def counts(self) -> dict:
        return {name: int((self.split == name).sum()) for name in SPLIT_NAMES}


def prepare_data(config: TrainConfig) -> TrainData:
    from perceptions.data.labels import Scaling, split_labels
    from perceptions.evaluate.run import load_evaluation_data

    studies = parse_studies(config.studies)
    data = load_evaluation_data(config.data, studies, score_column=config.score_column)
    table = data.labels
    if table.empty:
        raise PerceptionsError(f"{config.data}: no image has a score in qscores.tsv (are they the same data set?)")
    unrated = [s for s in studies if s not in table.columns or table[s].notna().sum() == 0]
    if unrated:
        rated = [s for s in studies if s not in unrated]
        hint = f"; train on --studies {','.join(rated)}" if rated else ""
        raise PerceptionsError(f"{config.data}: no image has a score for {', '.join(unrated)}{hint}")
    if config.max_images:
        table = table.iloc[:config.max_images].reset_index(drop=True)  # evaluate.run.select_split does the same
    if len(table) < 3:
        raise PerceptionsError(f"{config.data}: only {len(table)} labelled image(s); need at least 3 to split")
    if config.split == "city" and table["city"].nunique(dropna=False) < 2:
        raise PerceptionsError(f"{config.data}: --split city needs images of at least 2 cities")
    split = split_labels(table, method=config.split, seed=config.seed, val_frac=config.val_frac,
                         test_frac=config.test_frac).to_numpy()
    # Unreadable images leave after the split, so the readable ones keep the split `evaluate` rebuilds.
    skipped = unreadable_images(table["path"])
    if len(skipped):
        keep = ~table["path"].isin(skipped["path"]).to_numpy()
        table, split = table[keep].reset_index(drop=True), split[keep]
    train_rows = table[split == "train"]
    if train_rows.empty:
        raise PerceptionsError("the split left no image to train on; lower --val-frac / --test-frac")
    missing = [s for s in studies if train_rows[s].notna().sum() == 0]
    if missing:
        raise PerceptionsError(f"the training split has no score for {', '.join(missing)}; "
                               "use more images or another --seed")
    scaling = Scaling.fit(train_rows, studies)
    targets = np.stack([np.asarray(scaling.scale(table[s].to_numpy(dtype=float), s), dtype=np.float32)
                        for s in studies], axis=1)
    notes = list(data.notes)
    if len(skipped):
        notes.append(f"{len(skipped)} unreadable image(s) skipped (listed in {SKIPPED_FILE} in the run folder)")
    if config.loss != "regression" and data.votes is None:
        raise PerceptionsError(f"--loss {config.loss} learns from votes, but {config.data} has no votes.tsv/votes.csv")
    return TrainData(studies=studies, table=table, split=split, scaling=scaling, targets=targets,
                     votes=data.votes, truth=data.truth, notes=notes, skipped=skipped)


def unreadable_images(paths) -> pd.DataFrame:
    """path, reason of every image `open_rgb` refuses (empty, cut off, not an image, a bomb, a symlink loop...),
    checked once before training: a bad file is reported, not turned into a blank training example. JPEGs are
    decoded at 1/8 scale here, so the check costs little next to an epoch."""
    from perceptions.data.images import ImageError, open_rgb

    rows = []
    for path in paths:
        try:
            open_rgb(path, min_side=16)
        except ImageError as e:
            rows.append({"path": str(path), "reason": e.problem})
    return pd.DataFrame(rows, columns=["path", "reason"])


def data_summary(data: TrainData, config: TrainConfig) -> dict:
    """What the model package records about its training data (meta["data"])."""
    return {
        "path": str(Path(config.data)),
        "score_column": config.score_column,
        "max_images": config.max_images,
        "n_images": int(len(data.table)),
        "split": data.split_spec(config),
        "counts": data.counts(),
        "rated_per_study": {s: int(data.table[s].notna().sum()) for s in data.studies},
    }
