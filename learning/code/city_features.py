"""What the scripts of learning/06_inside_the_network.md share: the backbone as `perceptions train` runs it,
the split of a run, backbone features of every image computed once, the validation metrics of a run, and
figures written into a folder named on the command line.

Everything here calls the library the way `perceptions train` does (prepare_data for labels, split and 1..10
targets; the packaged EfficientNet-Lite0 at 128 px with crop 1.0; the eval transform; the run's validation
metrics), so a number printed by these scripts can be put next to a run's `metrics.csv`.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

from perceptions.errors import PerceptionsError

IMAGE_SIZE = 128          # `perceptions train`'s default input size
CROP_PCT = 1.0            # ... and its centre crop (the whole picture height)
BACKBONE = "efficientnet_lite0"


def run(main) -> None:
    """Run a script's main(); a PerceptionsError (a bad folder, a figure that exists) is one line, exit 2.
    The library's progress lines are turned down meanwhile: the scripts print what they measure."""
    import logging

    logger = logging.getLogger("perceptions")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        main()
    except PerceptionsError as exc:
        print(f"{Path(sys.argv[0]).name}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    finally:
        logger.setLevel(level)


def figure_path(folder, name: str, overwrite: bool = False) -> Path:
    """folder/name, refusing to replace a file that is there already unless `overwrite`."""
    path = Path(folder) / name
    if path.exists() and not overwrite:
        raise PerceptionsError(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def save_figure(fig, folder, name: str, overwrite: bool = False, dpi: int = 110) -> Path:
    """Write a matplotlib figure atomically (a killed script leaves no half-written PNG) and close it."""
    import matplotlib.pyplot as plt

    from perceptions.files import atomic_path

    path = figure_path(folder, name, overwrite)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    print(f"wrote {path}")
    return path


def load_backbone(image_size: int = IMAGE_SIZE, crop_pct: float = CROP_PCT, weights: str = "packaged"):
    """(backbone in eval mode, Preprocess): the packaged ImageNet EfficientNet-Lite0 without its classifier,
    with the preprocessing `perceptions train` uses by default (its weights' mean and std, 128 px, crop 1.0)."""
    from perceptions.nets.backbones import create_backbone

    backbone, preprocess, _ = create_backbone(BACKBONE, weights=weights)
    preprocess = dataclasses.replace(preprocess, input_size=int(image_size), crop_pct=float(crop_pct))
    return backbone.eval(), preprocess


def image_tensor(path, preprocess) -> torch.Tensor:
    """One image file -> (1, 3, S, S), exactly as validation and predict prepare it."""
    from perceptions.data.images import eval_transform, open_rgb

    return eval_transform(preprocess)(open_rgb(path)).unsqueeze(0)


def city_split(data_dir, seed: int = 0):
    """The TrainData `perceptions train --data DIR --seed SEED --loss regression` would train on: the label
    table, the split of every image (train/val/test, a keyed hash of its id and the seed), the 1..10 targets
    scaled on the training split, and the truth of a synthetic city."""
    from perceptions.train.config import TrainConfig
    from perceptions.train.prepare import prepare_data

    return prepare_data(TrainConfig(data=str(data_dir), seed=seed, loss="regression", progress=False))


def with_seed(data, seed: int):
    """The same TrainData at another `--seed`: another split, and the scaling and targets fitted on its training
    split, as prepare_data computes them (without decoding every image again to check it)."""
    from perceptions.data.labels import Scaling, split_from_spec, split_spec

    spec = split_spec(data.table, "random", seed)
    split = split_from_spec(data.table, spec).to_numpy()
    scaling = Scaling.fit(data.table[split == "train"], data.studies)
    targets = np.stack([np.asarray(scaling.scale(data.table[s].to_numpy(dtype=float), s), dtype=np.float32)
                        for s in data.studies], axis=1)
    return dataclasses.replace(data, split=split, scaling=scaling, targets=targets, spec=spec)


@torch.inference_mode()
def compute_features(paths, backbone, preprocess, batch_size: int = 64) -> torch.Tensor:
    """(N, F) pooled backbone features of the images, as the frozen epochs of `perceptions train` cache them."""
    from torch.utils.data import DataLoader

    from perceptions.data.datasets import ImageScores
    from perceptions.data.images import eval_transform

    images = ImageScores(paths, np.zeros((len(paths), 1)), eval_transform(preprocess), preprocess.input_size,
                         preprocess.decode_side)
    out = []
    for x, _, _ in DataLoader(images, batch_size=batch_size):
        out.append(backbone(x).float())
    return torch.cat(out)


def build_cache(data_dir, image_size: int = IMAGE_SIZE) -> dict:
    """Features of every labelled image of a city with what to learn and check them against: features (N, F),
    labels (N, S: the raw TrueSkill scores), truth (N, S, or None), location_id, city, path, studies."""
    data = city_split(data_dir, seed=0)
    backbone, preprocess = load_backbone(image_size)
    table = data.table
    truth = None
    if data.truth is not None:
        t = data.truth.drop_duplicates("location_id").set_index("location_id")
        truth = torch.tensor(t.loc[table["location_id"], data.studies].to_numpy(float), dtype=torch.float32)
    return {"features": compute_features(table["path"].tolist(), backbone, preprocess),
            "labels": torch.tensor(table[data.studies].to_numpy(float), dtype=torch.float32),
            "truth": truth, "location_id": table["location_id"].astype(str).tolist(),
            "city": table["city"].astype(str).tolist(), "path": table["path"].astype(str).tolist(),
            "studies": list(data.studies), "image_size": int(image_size)}


def save_cache(cache: dict, path) -> Path:
    from perceptions.files import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(cache, tmp)
    return path


def load_cache(path) -> dict:
    """A cache written by save_cache (tensors, lists and strings only: read with weights_only=True)."""
    from perceptions.files import read_torch_file

    return read_torch_file(path)


def cached_or_built(cache_path, data_dir, image_size: int = IMAGE_SIZE) -> dict:
    """The cache at `cache_path` if it is there, else built from `data_dir` (and saved there, when given)."""
    if cache_path and Path(cache_path).is_file():
        return load_cache(cache_path)
    cache = build_cache(data_dir, image_size)
    if cache_path:
        save_cache(cache, cache_path)
        print(f"cached the features of {len(cache['features'])} images in {cache_path}")
    return cache


def rows_of(cache: dict, data) -> np.ndarray:
    """Positions in the cache of the rows of data.table (the same images, whatever their order)."""
    position = {loc: i for i, loc in enumerate(cache["location_id"])}
    missing = [loc for loc in data.table["location_id"].astype(str) if loc not in position]
    if missing:
        raise PerceptionsError(f"the feature cache has no features for {len(missing)} image(s) of the data "
                               f"folder (e.g. {missing[0]}): was it made from another folder?")
    return np.array([position[loc] for loc in data.table["location_id"].astype(str)])


def validation_report(pred: np.ndarray, data, rows: np.ndarray | None = None) -> dict:
    """Mean over studies of the metrics `perceptions train` logs for its validation split, computed the same
    way (predictions clipped to 1..10, evaluate_predictions), plus spearman_truth on a synthetic city and the
    constant and random-rank baselines of perceptions/evaluate/baselines.py. pred: (len(rows), S)."""
    from perceptions.evaluate.report import evaluate_predictions
    from perceptions.train.validation import prediction_frame

    rows = data.rows("val") if rows is None else rows
    frame = prediction_frame(np.clip(pred, 1, 10), data, rows)
    mean = evaluate_predictions(frame, data.table.iloc[rows], data.studies, data.scaling, truth=data.truth)["mean"]
    keep = ("spearman", "acc_within_1_decile", "spearman_truth", "baseline_constant_within_1_decile",
            "baseline_random_within_1_decile")
    names = {"spearman": "val_spearman", "acc_within_1_decile": "val_within1"}
    return {names.get(k, k): float(mean[k]) for k in keep if k in mean}


def parse_seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise PerceptionsError(f"--seeds takes whole numbers separated by commas, e.g. 0,1,2; got {text!r}") \
            from None
