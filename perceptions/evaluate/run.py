"""Evaluate a model package on a PP2-layout data folder: the library behind `perceptions evaluate`.

The folder holds images/, qscores.tsv and, when present, votes (votes.tsv or votes.csv) and truth.csv (the
synthetic city). The test split is rebuilt from the split spec the model package recorded at training time, so
`evaluate` scores exactly the images training held out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from perceptions.errors import DataError, PerceptionsError
from perceptions.evaluate.report import evaluate_predictions, write_plots

SPLITS = ("test", "val", "train", "all")
VOTE_FILES = ("votes.tsv", "votes.csv")
DEFAULT_SCORE_COLUMN = "trueskill.score"


@dataclass
class EvaluationData:
    labels: pd.DataFrame                 # build_labels table: path, location_id, city, lat, lon, <study>...
    votes: pd.DataFrame | None = None
    truth: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Evaluation:
    metrics: dict                        # {study: {metric: value}} plus "mean"
    predictions: pd.DataFrame            # predict_paths output for the evaluated images
    skipped: pd.DataFrame                # unreadable images: path, reason
    split: str
    n_images: int
    plots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load_evaluation_data(data_dir, studies, score_column: str = DEFAULT_SCORE_COLUMN) -> EvaluationData:
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
    return EvaluationData(labels=labels, votes=votes, truth=truth, notes=notes)


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


def split_spec(meta: dict) -> dict | None:
    """The split spec recorded in the package: meta["data"]["split"] = {method, seed, val_frac, test_frac}."""
    spec = (meta.get("data") or {}).get("split")
    return dict(spec) if isinstance(spec, dict) else None


def select_split(labels: pd.DataFrame, meta: dict, split: str) -> pd.DataFrame:
    """The rows of `labels` in `split`, rebuilt with labels.split_labels from the package's recorded spec.

    The package may also record `max_images` (training kept only the first N labelled rows) in meta["data"];
    the same cut is applied first so the split sees the same table training saw.
    """
    if split not in SPLITS:
        raise PerceptionsError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    if split == "all":
        return labels
    from perceptions.data.labels import split_labels

    spec = split_spec(meta)
    if spec is None:
        raise PerceptionsError("the model package does not record the split it was trained with; "
                               "use --split all (every image, including those it was trained on)")
    max_images = (meta.get("data") or {}).get("max_images")
    table = labels.iloc[:int(max_images)] if max_images else labels
    known = ("method", "seed", "val_frac", "test_frac")
    assignment = split_labels(table, **{k: spec[k] for k in known if k in spec})
    chosen = table[(assignment == split).to_numpy()]
    if chosen.empty:
        raise PerceptionsError(f"no image of {len(table)} falls in the {split} split "
                               f"(split spec {spec}); is this the data the model was trained on?")
    return chosen


def label_scorer(score_column: str = DEFAULT_SCORE_COLUMN):
    """votes -> Series by location_id, scored the way the labels were (the score_fn of the split-half ceiling:
    pass it to evaluate_predictions). None for an unknown column (the ceiling then uses a win rate)."""
    from perceptions.data.scoring import SCORE_COLUMNS, score_votes

    method = {v: k for k, v in SCORE_COLUMNS.items()}.get(score_column)
    if method is None:
        return None  # unknown label method: the ceiling falls back to the win-rate scorer

    def score(votes: pd.DataFrame) -> pd.Series:
        scored = score_votes(votes, method=method)
        return scored.set_index(scored["location_id"].astype(str))[score_column]
    return score


def evaluate_model_details(model_dir, data_dir, split: str = "test", batch_size: int = 64, device: str = "cpu",
                           num_workers: int | None = None, plots_dir=None, progress: bool = True,
                           ceiling_splits: int = 5, seed: int = 0) -> Evaluation:
    """Load the package, rebuild the split, predict its images, and compute every metric (see evaluate_model)."""
    from perceptions.predict import load_model, predict_paths

    if not Path(data_dir).is_dir():  # before loading a model, which takes a while
        raise PerceptionsError(f"data folder {data_dir} does not exist")
    model = load_model(model_dir, device=device)
    studies, meta = list(model.studies), model.meta
    score_column = (meta.get("data") or {}).get("score_column", DEFAULT_SCORE_COLUMN)
    data = load_evaluation_data(data_dir, studies, score_column=score_column)
    chosen = select_split(data.labels, meta, split)
    pred, skipped = predict_paths(model, chosen["path"].tolist(), batch_size=batch_size,
                                  num_workers=num_workers, progress=progress)
    metrics = evaluate_predictions(pred, chosen, studies, model.scaling, votes=data.votes, truth=data.truth,
                                   score_fn=label_scorer(score_column), ceiling_splits=ceiling_splits,
                                   seed=seed)
    plots = write_plots(pred, chosen, studies, model.scaling, plots_dir) if plots_dir else []
    notes = list(data.notes)
    recorded = ((meta.get("data") or {}).get("counts") or {}).get(split)
    # Training leaves unreadable images out after the split, so its count may be either of these two.
    if recorded is not None and int(recorded) not in (len(chosen), len(chosen) - len(skipped)):
        notes.append(f"the model was trained with {recorded} {split} images, this folder gives {len(chosen)}: "
                     "it is not the data the model was trained on, so some test images may have been seen")
    if len(skipped):
        notes.append(f"{len(skipped)} unreadable image(s) left out, e.g. {skipped['path'].iloc[0]}: "
                     f"{skipped['reason'].iloc[0]}")
    return Evaluation(metrics=metrics, predictions=pred, skipped=skipped, split=split, n_images=len(chosen),
                      plots=plots, notes=notes)


def evaluate_model(model_dir, data_dir, split: str = "test", batch_size: int = 64, device: str = "cpu",
                   num_workers: int | None = None, plots_dir=None, progress: bool = False,
                   ceiling_splits: int = 5, seed: int = 0) -> dict:
    """{study: {metric: value}} (plus "mean") of the package at model_dir on data_dir's `split` images
    (test: the split held out in training; all: every labelled image)."""
    return evaluate_model_details(model_dir, data_dir, split=split, batch_size=batch_size, device=device,
                                  num_workers=num_workers, plots_dir=plots_dir, progress=progress,
                                  ceiling_splits=ceiling_splits, seed=seed).metrics
