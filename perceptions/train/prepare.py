"""Everything a run needs from the data folder, checked before anything is written: labels, split, scaling,
1..10 targets, vote pairs, truth.

Bad input stops here with one clear line (no images, no scores, a study nobody rated, too few images to split).
The split is hashed by location id (data/labels.py): the package records its spec (`split_spec`, with the
held-out cities of a city split) and the run folder lists it (`write_splits` -> SPLITS_FILE), so `perceptions
evaluate` rebuilds it on any later state of the folder and scores only images this run never trained or
validated on. `--max-images N` is a hashed sample of locations, stable as images come and go.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from perceptions.data.datasets import PairArrays, vote_pairs
from perceptions.data.labels import SPLIT_NAMES
from perceptions.errors import PerceptionsError
from perceptions.files import atomic_write, read_json, write_json
from perceptions.studies import parse_studies
from perceptions.train.config import TrainConfig

SKIPPED_FILE = "skipped_images.csv"
PLACEHOLDER_FILE = "placeholder_images.csv"  # readable images that look like "no imagery" tiles: trained on, listed
SPLITS_FILE = "splits.csv"       # location_id,split of every labelled location the run used
CHECK_FILE = "image_check.json"  # which images were unreadable, and in which state of the folder


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
    image_check: str | None = None       # the folder state `skipped` was checked on (-> CHECK_FILE)
    spec: dict | None = None             # labels.split_spec: what re-derives `split` (-> meta["data"]["split"])
    placeholders: pd.DataFrame | None = None  # placeholder-looking images kept: path, reason (-> PLACEHOLDER_FILE)

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
        """The recorded split: method, seed, val_frac, test_frac, hash (and test_cities for a city split)."""
        if self.spec is not None:
            return dict(self.spec)
        from perceptions.data.labels import split_spec
        return split_spec(self.table, config.split, config.seed, config.val_frac, config.test_frac)

    def counts(self) -> dict:
        return {name: int((self.split == name).sum()) for name in SPLIT_NAMES}


def prepare_data(config: TrainConfig) -> TrainData:
    from perceptions.data.folder import load_folder
    from perceptions.data.labels import Scaling, sample_images, split_from_spec, split_spec

    studies = parse_studies(config.studies)
    data = load_folder(config.data, studies, score_column=config.score_column)
    table = data.labels
    if table.empty:
        raise PerceptionsError(f"{config.data}: no image has a score in qscores.tsv (are they the same data set?)")
    unrated = [s for s in studies if s not in table.columns or table[s].notna().sum() == 0]
    if unrated:
        rated = [s for s in studies if s not in unrated]
        hint = f"; train on --studies {','.join(rated)}" if rated else ""
        raise PerceptionsError(f"{config.data}: no image has a score for {', '.join(unrated)}{hint}")
    if config.max_images:
        table = sample_images(table, config.max_images, seed=config.seed)
    if len(table) < 3:
        raise PerceptionsError(f"{config.data}: only {len(table)} labelled image(s); need at least 3 to split")
    if config.split == "city" and table["city"].nunique(dropna=False) < 2:
        raise PerceptionsError(f"{config.data}: --split city needs images of at least 2 cities")
    spec = split_spec(table, config.split, config.seed, config.val_frac, config.test_frac)
    split = split_from_spec(table, spec).to_numpy()
    # Unreadable images leave after the split, so the readable ones keep the split `evaluate` rebuilds.
    skipped, placeholders, check_key = unreadable_images(table["path"], config)
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
    if len(placeholders):
        notes.append(f"{len(placeholders)} image(s) look like placeholders ('no imagery' tiles or near-uniform "
                     f"frames), e.g. {placeholders['path'].iloc[0]}: trained on as they are, listed in "
                     f"{PLACEHOLDER_FILE}; `perceptions check DATA --fix DIR` writes a copy without them")
    if config.loss != "regression" and data.votes is None:
        raise PerceptionsError(f"--loss {config.loss} learns from votes, but {config.data} has no votes.tsv/votes.csv")
    return TrainData(studies=studies, table=table, split=split, scaling=scaling, targets=targets,
                     votes=data.votes, truth=data.truth, notes=notes, skipped=skipped, image_check=check_key,
                     spec=spec, placeholders=placeholders)


def unreadable_images(paths, config: TrainConfig) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(path, reason of every image `open_rgb` refuses, path, reason of every readable one that looks like a
    placeholder, the folder-state key they hold for). Checked once per
    state of the images: rank 0 checks, in parallel, and every rank gets its list; a resumed run whose images
    have not changed reads the list its run folder kept (CHECK_FILE) instead of checking again. An image no
    taller than --crop-bottom stops the run here, with one line."""
    from perceptions import runtime
    from perceptions.data.image_check import COLUMNS, folder_state, inspect_images

    key = folder_state(paths)
    if config.resume:
        cache = Path(config.resume) / CHECK_FILE
        try:
            kept = read_json(cache)
        except PerceptionsError:
            kept = {}
        if kept.get("folder_state") == key:
            return (pd.DataFrame(kept.get("skipped", []), columns=COLUMNS),
                    pd.DataFrame(kept.get("placeholders", []), columns=COLUMNS), key)
    return (*runtime.on_main(lambda: inspect_images(paths, progress=config.progress,
                                                    crop_bottom=config.crop_bottom)), key)


def write_image_check(data: TrainData, run_dir) -> None:
    """The image check's result in the run folder: CHECK_FILE for --resume, SKIPPED_FILE for a reader."""
    skipped = data.skipped if data.skipped is not None else pd.DataFrame(columns=["path", "reason"])
    placeholders = data.placeholders if data.placeholders is not None else skipped.iloc[:0]
    check = {"folder_state": data.image_check, "skipped": skipped.to_dict(orient="records")}
    if len(placeholders):
        check["placeholders"] = placeholders.to_dict(orient="records")
    write_json(Path(run_dir) / CHECK_FILE, check)
    for table, name in ((skipped, SKIPPED_FILE), (placeholders, PLACEHOLDER_FILE)):
        if len(table):
            with atomic_write(Path(run_dir) / name, newline="") as f:
                table.to_csv(f, index=False)


def write_splits(data: TrainData, run_dir) -> Path:
    """SPLITS_FILE in the run folder: `location_id,split`, one row per labelled location the run used (unreadable
    images left out), sorted by location id. Written atomically; returns its path."""
    table = pd.DataFrame({"location_id": data.table["location_id"].astype(str).to_numpy(),
                          "split": np.asarray(data.split, dtype=object)})
    table = table.drop_duplicates("location_id").sort_values("location_id", kind="stable")
    path = Path(run_dir) / SPLITS_FILE
    with atomic_write(path, newline="") as f:
        table.to_csv(f, index=False)
    return path


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
