"""Chapter 7's workbench: backbone features of a synthetic city, computed once, and a linear head fitted on them.

`perceptions train` starts with a frozen phase (perceptions/train/phases.py): it runs the ImageNet-pretrained
backbone once over every image and trains only the small head on the cached features. Chapter 7's experiments
need dozens of such heads (five split seeds times several settings), so they cache the features once, exactly
as that phase computes them (same backbone, same 128-pixel preprocessing, same inference path), and fit each
head in closed form: ridge regression, least squares with a penalty `alpha` on the weights, chosen on the
validation split. A ridge head has no random start, so its seed is only the split's seed.

    python learning/code/wrong_features.py CITY --out FEATURES.npz [--with-watermark]   # CITY: a synth folder
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from perceptions.errors import PerceptionsError
from perceptions.studies import STUDY_NAMES

IMAGE_SIZE = 128            # what `perceptions train` uses by default
ALPHAS = (10.0, 100.0, 1000.0, 10000.0, 100000.0)   # ridge penalties tried; the validation split picks one


# ---------------------------------------------------------------------------------------------- the city

def city_table(city) -> pd.DataFrame:
    """One row per image of a synthetic city: path, location_id, city, neighbourhood, light, the scene's
    attributes, the true perception (`true_<study>`) and the crowd's TrueSkill label (`<study>`)."""
    from perceptions.data.folder import read_truth
    from perceptions.data.placepulse import list_images, read_qscores

    city = Path(city)
    if not (city / "truth.csv").is_file():
        raise PerceptionsError(f"{city}: no truth.csv (make the city with `perceptions synth --out {city}`)")
    images = list_images(city / "images")
    truth = read_truth(city / "truth.csv")
    truth = truth.rename(columns={s: f"true_{s}" for s in STUDY_NAMES}).drop(columns=["city", "lat", "lon"])
    scores = read_qscores(city / "qscores.tsv").pivot(index="location_id", columns="study",
                                                      values="trueskill.score")
    table = images.merge(truth, on="location_id").merge(scores[list(STUDY_NAMES)], left_on="location_id",
                                                          right_index=True, how="left")
    if table.empty:
        raise PerceptionsError(f"{city}: its images/ and truth.csv name no common location")
    return table.reset_index(drop=True)


def labels_of(city, location_ids) -> np.ndarray:
    """(N, 6) TrueSkill labels of another city with the same images (same --seed and --images: `synth` draws
    the same scenes and truth, only the votes differ), in the order of `location_ids`."""
    table = city_table(city).set_index("location_id")
    missing = pd.Index(location_ids).difference(table.index)
    if len(missing):
        raise PerceptionsError(f"{city}: {len(missing)} images of the features are not in this city (make it "
                               "with the same --images and --seed)")
    return table.loc[list(location_ids), list(STUDY_NAMES)].to_numpy(float)


def split(table: pd.DataFrame, seed: int = 0, method: str = "random", test_cities=None) -> np.ndarray:
    """'train' / 'val' / 'test' per row, exactly as `perceptions train --split METHOD --seed SEED` splits."""
    from perceptions.data.labels import split_labels

    return split_labels(table, method, seed, test_cities=test_cities).to_numpy()


# ---------------------------------------------------------------------------------------------- features

def backbone(image_size: int = IMAGE_SIZE):
    """(features function, Preprocess): the ImageNet-pretrained backbone `perceptions train` starts from."""
    import torch

    from perceptions.nets.perception_net import build_net
    from perceptions.predict.inference import NetForward
    from perceptions.runtime import choose_precision

    net, preprocess = build_net("efficientnet_lite0", STUDY_NAMES, weights="packaged")
    preprocess = dataclasses.replace(preprocess, input_size=int(image_size), crop_pct=1.0)
    forward = NetForward(net.eval(), choose_precision(torch.device("cpu"), False))
    return forward.features, preprocess


def compute_features(images, image_size: int = IMAGE_SIZE, batch_size: int = 64, edits=(None,)) -> list:
    """[(N, 1280) pooled backbone features of `images` (paths or PIL images)] for each of `edits`: None for the
    pictures as they are, or a function PIL -> PIL that changes each picture first (a watermark, say). Each
    picture is decoded once for all edits."""
    import torch

    from perceptions.data.images import eval_transform, open_rgb

    features_fn, preprocess = backbone(image_size)
    transform = eval_transform(preprocess)
    out = [[] for _ in edits]
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            pictures = [open_rgb(i, min_side=preprocess.decode_side) if isinstance(i, (str, Path)) else i
                        for i in images[start:start + batch_size]]
            for k, edit in enumerate(edits):
                edited = pictures if edit is None else [edit(p) for p in pictures]
                out[k].append(features_fn(torch.stack([transform(p) for p in edited])).numpy())
    return [np.concatenate(o) if o else np.zeros((0, 1280), dtype=np.float32) for o in out]


def cache_features(city, out, image_size: int = IMAGE_SIZE, overwrite: bool = False,
                   watermark: bool = False) -> Path:
    """Write the features of every image of `city` to `out` (.npz); with `watermark`, also those of every
    image with wrong_watermark.py's watermark stamped on it (`stamped`), for the shortcut experiment."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise PerceptionsError(f"{out} already exists (pass --overwrite to replace it)")
    table = city_table(city)
    edits = (None,)
    if watermark:
        from wrong_watermark import stamp
        edits = (None, stamp)
    features = compute_features(list(table["path"]), image_size, edits=edits)
    extra = {"stamped": features[1]} if watermark else {}
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, location_id=table["location_id"].to_numpy(str), features=features[0],
                        city=str(Path(city).resolve()), image_size=int(image_size), **extra)
    return out


def load_features(path, stamped: bool = False):
    """(the city table in the cached order, (N, F) features) of a file `cache_features` wrote; with
    `stamped`, also the features of the stamped pictures (None when the file has none)."""
    if not Path(path).is_file():
        raise PerceptionsError(f"{path}: no such features file (make it with wrong_features.py)")
    with np.load(path) as saved:
        ids, features, city = saved["location_id"].astype(str), saved["features"], str(saved["city"])
        marked = saved["stamped"].astype(np.float64) if "stamped" in saved.files else None
    table = city_table(city).set_index("location_id").loc[ids].reset_index()
    return (table, features.astype(np.float64), marked) if stamped else (table, features.astype(np.float64))


# ---------------------------------------------------------------------------------------------- the head

@dataclasses.dataclass
class RidgeHead:
    """A linear head y = x W + b per study, fitted by ridge regression on standardised features."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray     # (F, S)
    bias: np.ndarray        # (S,)
    alpha: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.weights + self.bias


def fit_ridge(x: np.ndarray, y: np.ndarray, alphas=ALPHAS) -> list[RidgeHead]:
    """One head per penalty in `alphas`, all from one SVD of the training features (rows with a NaN label are
    left out of that study's fit)."""
    from threadpoolctl import threadpool_limits

    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / scale
    heads = {a: (np.zeros((x.shape[1], y.shape[1])), np.zeros(y.shape[1])) for a in alphas}
    masks = np.isfinite(y)
    # Studies rated on the same images share one SVD (on a synthetic city: all six).
    for pattern in np.unique(masks, axis=1).T:
        columns = np.flatnonzero((masks == pattern[:, None]).all(0))
        rows = z[pattern]
        if len(rows) < 2:
            raise PerceptionsError(f"too few labelled training images ({len(rows)}) to fit a head")
        # One BLAS thread: these matrices are small, and on a shared machine threads that wait for a busy core
        # made this SVD fifty times slower.
        with threadpool_limits(1, user_api="blas"):
            u, s, vt = np.linalg.svd(rows - rows.mean(0), full_matrices=False)
        target = y[pattern][:, columns]
        centred = target - target.mean(0)
        for a in alphas:
            w = vt.T @ ((s / (s ** 2 + a))[:, None] * (u.T @ centred))
            heads[a][0][:, columns] = w
            heads[a][1][columns] = target.mean(0) - rows.mean(0) @ w
    return [RidgeHead(mean, scale, w, b, float(a)) for a, (w, b) in heads.items()]


def mean_spearman(pred: np.ndarray, target: np.ndarray) -> float:
    """Spearman's rank correlation per study, averaged over the studies. The same number as
    perceptions/evaluate/metrics.py's `spearman` (average ranks for ties, NaN pairs dropped), computed for all
    studies at once when nothing is missing: the experiments call it tens of thousands of times."""
    from scipy.stats import rankdata

    from perceptions.evaluate.metrics import spearman

    pred, target = np.asarray(pred, dtype=float), np.asarray(target, dtype=float)
    if not (np.isfinite(pred).all() and np.isfinite(target).all()) or len(pred) < 2:
        return float(np.nanmean([spearman(pred[:, j], target[:, j]) for j in range(target.shape[1])]))
    rp, rt = rankdata(pred, axis=0), rankdata(target, axis=0)
    rp, rt = rp - rp.mean(0), rt - rt.mean(0)
    denominator = np.sqrt((rp * rp).sum(0) * (rt * rt).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(denominator > 0, (rp * rt).sum(0) / denominator, np.nan)
    return float(np.nanmean(np.clip(rho, -1, 1))) if np.isfinite(rho).any() else float("nan")


def fit_on_validation(x, y, parts: np.ndarray, alphas=ALPHAS) -> RidgeHead:
    """The head whose penalty gives the best mean validation Spearman against the labels `y` (never the
    test split: that one is looked at once, at the end)."""
    heads = fit_ridge(x[parts == "train"], y[parts == "train"], alphas)
    val = parts == "val"
    return max(heads, key=lambda h: mean_spearman(h.predict(x[val]), y[val]))


def truth_of(table: pd.DataFrame) -> np.ndarray:
    return table[[f"true_{s}" for s in STUDY_NAMES]].to_numpy(float)


def labels(table: pd.DataFrame) -> np.ndarray:
    return table[list(STUDY_NAMES)].to_numpy(float)


def spread(values) -> str:
    """'mean +- sd (n)' of a metric over seeds: the spread a reader compares differences with."""
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.3f} +- {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}"


def save_figure(fig, folder, name: str) -> Path:
    """Write a matplotlib Figure to FOLDER/learning_07_NAME.png (the name the chapter's figures have in
    docs/images/), replacing an earlier one: figures are regenerated, not kept."""
    path = Path(folder) / f"learning_07_{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def run_main(main) -> None:
    """Run `main()`; a PerceptionsError becomes one line on stderr and exit status 2, as in the package."""
    try:
        main()
    except PerceptionsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("city", help="a synthetic city folder (perceptions synth --out ...)")
    parser.add_argument("--out", required=True, help="the .npz file to write")
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE)
    parser.add_argument("--with-watermark", action="store_true",
                        help="also cache the features of the pictures with a watermark (wrong_watermark.py)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    out = cache_features(args.city, args.out, args.image_size, args.overwrite, args.with_watermark)
    table, features, stamped = load_features(out, stamped=True)
    print(f"{len(table)} images of {args.city}: {features.shape[1]} features each at {args.image_size} px"
          f"{', with and without a watermark' if stamped is not None else ''}, written to {out}")


if __name__ == "__main__":
    run_main(main)
