"""Evaluate a model package on a PP2-layout data folder: the library behind `perceptions evaluate`.

The folder holds images/, qscores.tsv and, when present, votes (votes.tsv or votes.csv) and truth.csv (the
synthetic city). The split is rebuilt from the split spec the model package recorded at training time
(data/labels.py: each location's split follows from a hash of its own id, and a city split records its held-out
cities), so on a folder that gained, lost or renamed images since, `evaluate --split test` still scores only
images that were never in the run's train or val split; the notes say how many it found.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from perceptions.data.folder import DEFAULT_SCORE_COLUMN, label_scorer, load_folder
from perceptions.data.labels import SPLIT_NAMES
from perceptions.errors import PerceptionsError
from perceptions.evaluate.report import evaluate_predictions, write_plots

# What `evaluate --split` accepts: a split of the model's training run, or every labelled image.
EVALUATION_SPLITS = (*SPLIT_NAMES, "all")


@dataclass
class Evaluation:
    metrics: dict                        # {study: {metric: value}} plus "mean"
    predictions: pd.DataFrame            # predict_paths output for the evaluated images (-> --predictions)
    skipped: pd.DataFrame                # unreadable images: path, reason
    split: str
    n_images: int
    plots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def split_spec(meta: dict) -> dict | None:
    """The split spec recorded in the package: meta["data"]["split"] = {method, seed, val_frac, test_frac, hash,
    and test_cities for a city split} (labels.split_spec)."""
    spec = (meta.get("data") or {}).get("split")
    return dict(spec) if isinstance(spec, dict) else None


def select_split(labels: pd.DataFrame, meta: dict, split: str) -> pd.DataFrame:
    """The rows of `labels` in `split` by the package's recorded spec (labels.split_from_spec), whatever images
    the folder gained, lost or renamed since training. No `max_images` cut: a sampled-out image was never
    trained on, and its hash alone says whether it belongs to `split`."""
    if split not in EVALUATION_SPLITS:
        raise PerceptionsError(f"--split must be one of {', '.join(EVALUATION_SPLITS)}, not {split!r}")
    if split == "all":
        return labels
    from perceptions.data.labels import split_from_spec

    spec = split_spec(meta)
    if spec is None:
        raise PerceptionsError("the model package does not record the split it was trained with; "
                               "use --split all (every image, including those it was trained on)")
    chosen = labels[(split_from_spec(labels, spec) == split).to_numpy()]
    if chosen.empty:
        held = f", test cities {', '.join(spec['test_cities'])}" if spec.get("test_cities") else ""
        raise PerceptionsError(f"none of the {len(labels)} labelled images of this folder is in the model's "
                               f"{split} split ({spec.get('method')} split, seed {spec.get('seed')}{held}); "
                               "is this the data the model was trained on?")
    return chosen


def split_count_note(split: str, found: int, unreadable: int, recorded) -> str | None:
    """How many images of `split` this folder has against the count training recorded (None if unrecorded)."""
    if recorded is None:
        return None
    note = f"{split} split: {found} images here, {int(recorded)} when the model was trained"
    # Training leaves unreadable images out after the split, so its count may be either of these two.
    if int(recorded) not in (found, found - unreadable):
        note += ("; the folder has changed since, but every image keeps the split of its own location id, so "
                 f"no image of the run's other splits is among these {found}")
    return note


def evaluate_model_details(model_dir, data_dir, split: str = "test", batch_size: int = 64, device: str = "cpu",
                           num_workers: int | None = None, plots_dir=None, progress: bool = True,
                           ceiling_splits: int = 5, seed: int = 0) -> Evaluation:
    """Load the package, rebuild the split, predict its images, and compute every metric (see evaluate_model)."""
    from perceptions.predict.model import load_model
    from perceptions.predict.pipeline import predict_paths

    if not Path(data_dir).is_dir():  # before loading a model, which takes a while
        raise PerceptionsError(f"data folder {data_dir} does not exist")
    model = load_model(model_dir, device=device)
    studies, meta = list(model.studies), model.meta
    score_column = (meta.get("data") or {}).get("score_column", DEFAULT_SCORE_COLUMN)
    data = load_folder(data_dir, studies, score_column=score_column)
    chosen = select_split(data.labels, meta, split)
    pred, skipped = predict_paths(model, chosen["path"].tolist(), batch_size=batch_size,
                                  num_workers=num_workers, progress=progress)
    metrics = evaluate_predictions(pred, chosen, studies, model.scaling, votes=data.votes, truth=data.truth,
                                   score_fn=label_scorer(score_column), ceiling_splits=ceiling_splits,
                                   seed=seed, prediction_deciles=model.prediction_deciles)
    plots = (write_plots(pred, chosen, studies, model.scaling, plots_dir,
                         prediction_deciles=model.prediction_deciles) if plots_dir else [])
    notes = list(data.notes)
    recorded = ((meta.get("data") or {}).get("counts") or {}).get(split)
    count_note = split_count_note(split, len(chosen), len(skipped), recorded)
    if count_note:
        notes.append(count_note)
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


def compare_models(model_dir, compare_dir, data_dir, split: str = "test", batch_size: int = 64,
                   device: str = "cpu", num_workers: int | None = None, plots_dir=None, progress: bool = True,
                   seed: int = 0) -> tuple[Evaluation, dict]:
    """(the Evaluation of `model_dir`, compare.compare_pairwise of it against `compare_dir` on the same images
    and votes, over the studies both models have). The images are `split` by model_dir's recorded split; the
    folder must hold votes."""
    from perceptions.data.folder import VOTE_FILES
    from perceptions.data.placepulse import read_votes
    from perceptions.evaluate.compare import compare_pairwise
    from perceptions.predict.model import load_model
    from perceptions.predict.pipeline import predict_paths

    votes_path = next((Path(data_dir) / f for f in VOTE_FILES if (Path(data_dir) / f).is_file()), None)
    if votes_path is None:
        raise PerceptionsError(f"--compare-model compares pairwise accuracy on votes, and {data_dir} has no "
                               f"{' or '.join(VOTE_FILES)}")
    other = load_model(compare_dir, device=device)  # a bad package fails before the long evaluation
    result = evaluate_model_details(model_dir, data_dir, split=split, batch_size=batch_size, device=device,
                                    num_workers=num_workers, plots_dir=plots_dir, progress=progress, seed=seed)
    other_pred, _ = predict_paths(other, result.predictions["path"].tolist(), batch_size=batch_size,
                                  num_workers=num_workers, progress=progress)
    studies = [s for s in result.metrics if s != "mean" and s in other.studies]
    if not studies:
        raise PerceptionsError(f"--compare-model {compare_dir} predicts {', '.join(other.studies)}: no study in "
                               "common with --model")
    return result, compare_pairwise(result.predictions, other_pred, read_votes(votes_path), studies, seed)
