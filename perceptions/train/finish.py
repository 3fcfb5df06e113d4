"""The end of a run: reload the best weights, fit the predicted-decile edges on the training split, evaluate
once on the held-out test split, write the test predictions, evaluation plots, the model package and
summary.json.

Predicted deciles: predictions shrink towards the mean, so the label decile edges would leave predicted deciles
1 and 10 nearly empty. The edges applied to predictions are the 10%..90% quantiles of the best model's own
predictions on the training split (`PredictionDeciles`, stored in the package as meta["prediction_deciles"]), so
each predicted decile holds about a tenth of the training images, as each label decile does. This costs one
more inference pass over the training images: over their cached early-stage maps or backbone features when the
run has them and they still hold (`cached_train_outputs`), else over the decoded images.

Test scores are made the way `perceptions predict` makes them (the one inference path, then `to_scores` and
`to_deciles`) and scored by the same `evaluate_predictions` call `perceptions evaluate` uses, so the numbers here
are the ones a user gets.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from perceptions import runtime
from perceptions.data.datasets import ImageScores
from perceptions.data.folder import label_scorer
from perceptions.data.images import eval_transform
from perceptions.evaluate.report import evaluate_predictions, format_table, write_plots
from perceptions.files import atomic_write, jsonable, write_json
from perceptions.nets.package import save_package
from perceptions.predict.inference import PredictionDeciles, to_deciles, to_scores
from perceptions.train import run_folder as rf
from perceptions.train.checkpoint import load_checkpoint
from perceptions.train.config import TrainConfig
from perceptions.train.prepare import TrainData, data_summary
from perceptions.train.stage_cache import LaterStages, predict_maps
from perceptions.train.validation import predict_dataset, predict_features, prediction_frame

log = logging.getLogger(__name__)


def split_scores(net, preprocess, data: TrainData, config: TrainConfig, device, precision, split: str,
                 desc: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rows of `split`, their (N, S) scores on 1..10): the eval transform, the one inference path, to_scores."""
    rows = data.rows(split)
    images = ImageScores(data.table["path"].to_numpy()[rows], data.targets[rows], eval_transform(preprocess),
                         preprocess.input_size, preprocess.decode_side)
    return rows, to_scores(predict_dataset(net, images, config, device, precision, desc or split))


def fit_prediction_deciles(net, preprocess, data: TrainData, config: TrainConfig, device, precision,
                           cached: dict | None = None, backbone_as_cached: bool = False) -> PredictionDeciles | None:
    """Decile edges of the model's own predictions on the training split (None without training images). Per
    study only the images rated for it count, the images the label edges (Scaling) were fitted on."""
    if not data.rows("train").size:
        return None
    rows = data.rows("train")
    outputs = cached_train_outputs(net, config, device, precision, cached or {}, len(rows), backbone_as_cached)
    if outputs is None:
        rows, scores = split_scores(net, preprocess, data, config, device, precision, "train", "train deciles")
    else:
        scores = to_scores(outputs)
    return PredictionDeciles.fit(np.where(np.isfinite(data.targets[rows]), scores, np.nan), data.studies)


def cached_train_outputs(net, config: TrainConfig, device, precision, cached: dict, n_train: int,
                         backbone_as_cached: bool) -> np.ndarray | None:
    """The net's outputs on the training images from what the run cached, when that is the same net on the same
    pictures (the eval transform, image by image, as split_scores decodes them): the early-stage maps, whose
    frozen stages fine-tuning never changes, or the pooled features, while the backbone is still the one they
    were computed with (`backbone_as_cached`). None: decode the images again. Decoding the training split was a
    third of `train --epochs 0`'s time on Place Pulse's 110k images (benchmarks/RESULTS.md, full-size rehearsal).
    The caches hold train rows first (phases.build_phase)."""
    if "stage_cache" in cached:
        later = LaterStages(net, precision, config.frozen_stage_count)
        return predict_maps(later, cached["stage_cache"].maps[0, :n_train], device)
    if "features" in cached and backbone_as_cached:
        return predict_features(net, cached["features"].features[:n_train].to(device))
    return None


def test_predictions(net, preprocess, data: TrainData, config: TrainConfig, device, precision,
                     prediction_deciles=None):
    """DataFrame of the test images: location fields, `<study>_score` (1..10), `<study>_decile` (by
    `prediction_deciles` when given, as `predict` with the package does; else the label edges) and
    `<study>_decile_label_edges` (by the label edges, the old definition)."""
    rows, scores = split_scores(net, preprocess, data, config, device, precision, "test")
    frame = prediction_frame(scores, data, rows)
    edges = prediction_deciles if prediction_deciles is not None else data.scaling
    deciles = to_deciles(scores, edges, data.studies)
    label_deciles = to_deciles(scores, data.scaling, data.studies)
    for j, s in enumerate(data.studies):
        frame[f"{s}_decile"] = deciles[:, j]
    for j, s in enumerate(data.studies):
        frame[f"{s}_decile_label_edges"] = label_deciles[:, j]
    return frame


def finish_run(run_dir: Path, net, preprocess, data: TrainData, config: TrainConfig, device, precision,
               timings: dict, started: float, cached: dict | None = None) -> dict:
    """cached: what the phases cached in this process (build_phase's `shared`), which spares decoding the
    training images again for the decile edges."""
    best_epoch = None
    if (run_dir / rf.BEST).is_file():
        best = load_checkpoint(run_dir / rf.BEST)
        net.load_state_dict(best["model"])
        best_epoch = int(best["epoch"])
    net.eval()
    t0 = time.perf_counter()
    log.info("fitting the predicted-decile edges on the training split...")
    # The backbone is still the pretrained one the features were computed with when the kept weights are a
    # head-only epoch's, or when no fine-tuning epoch ran.
    as_cached = best_epoch <= config.freeze_epochs if best_epoch is not None else config.epochs == 0
    deciles = fit_prediction_deciles(net, preprocess, data, config, device, precision, cached, as_cached)
    timings["train_deciles_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics, plots = {}, []
    if data.rows("test").size and config.final_test:
        log.info("evaluating on the test split...")
        frame = test_predictions(net, preprocess, data, config, device, precision, deciles)
        labels = data.table.iloc[data.rows("test")]
        metrics = evaluate_predictions(frame, labels, data.studies, data.scaling, votes=data.votes,
                                       truth=data.truth, score_fn=label_scorer(config.score_column),
                                       seed=config.seed, prediction_deciles=deciles)
        if runtime.is_main_process():
            with atomic_write(run_dir / "test_predictions.csv", newline="") as f:
                frame.to_csv(f, index=False, float_format="%.6g")
            plots = write_plots(frame, labels, data.studies, data.scaling, run_dir / "evaluation",
                                prediction_deciles=deciles)
    timings["test_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - started
    rows = rf.read_metrics(run_dir)
    summary = {
        "run_dir": str(run_dir),
        "backbone": config.backbone,
        "studies": data.studies,
        "image_size": preprocess.input_size,
        "epochs_run": int(rows[-1]["epoch"]) if rows else 0,
        "best_epoch": best_epoch,
        "monitor": config.monitor,
        "best_value": next((r.get(config.monitor) for r in rows if r["epoch"] == best_epoch), None),
        "data": data.counts(),
        "test": jsonable(metrics),
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }
    if runtime.is_main_process():
        meta = {"data": data_summary(data, config), "metrics": jsonable(metrics),
                "training": {"config": config.to_dict(), "best_epoch": best_epoch, "epochs_run": summary["epochs_run"],
                             "monitor": config.monitor, "run": run_dir.name}}
        if deciles is not None:
            meta["prediction_deciles"] = deciles.to_dict()
        # The folder is this run's own: a resumed run that died while exporting may replace its package.
        save_package(run_dir / "model", net, preprocess, data.scaling.to_dict(), meta, overwrite=True)
        write_json(run_dir / rf.SUMMARY_FILE, summary)
    if metrics:
        log.info("test metrics:\n" + format_table(metrics))
    log.info(f"done in {timings['total_s']:.0f} s; run folder: {run_dir}")
    return summary
