"""The end of a run: reload the best weights, evaluate on the held-out test split, write the test predictions,
evaluation plots, the model package and summary.json.

Test scores are made the way `perceptions predict` makes them (clipped to 1..10, rounded to 1e-4) and scored by
the same `evaluate_predictions` call `perceptions evaluate` uses, so the numbers here are the ones a user gets.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from perceptions.data.datasets import ImageScores
from perceptions.train import run_folder as rf
from perceptions.train.checkpoint import load_checkpoint
from perceptions.train.config import TrainConfig
from perceptions.train.distributed import predict_sharded
from perceptions.train.prepare import TrainData, data_summary
from perceptions.train.runtime import is_main_process

SCORE_DECIMALS = 4  # as perceptions.predict rounds its scores


def test_predictions(net, preprocess, data: TrainData, config: TrainConfig, device, precision):
    """DataFrame of the test images: location fields, `<study>_score` (1..10) and `<study>_decile`."""
    from perceptions.data.images import eval_transform
    from perceptions.train.loop import prediction_frame, predict

    rows = data.rows("test")
    images = ImageScores(data.table["path"].to_numpy()[rows], data.targets[rows], eval_transform(preprocess),
                         preprocess.input_size, preprocess.resize_size)
    # Under torchrun each rank predicts every N-th test image and all ranks get every prediction, in order.
    raw = predict_sharded(lambda ds: predict(net, ds, device, precision, max(64, config.batch_size),
                                             config.workers, desc="test",
                                             progress=config.progress and is_main_process()), images)
    scores = np.round(np.clip(raw, 1.0, 10.0), SCORE_DECIMALS)
    frame = prediction_frame(scores, data, rows)
    for j, s in enumerate(data.studies):
        frame[f"{s}_decile"] = data.scaling.decile(scores[:, j], s)
    return frame


def finish_run(run_dir: Path, net, preprocess, data: TrainData, config: TrainConfig, device, precision,
               timings: dict, started: float) -> dict:
    from perceptions.evaluate.report import evaluate_predictions, format_table, to_jsonable, write_plots
    from perceptions.evaluate.run import label_scorer
    from perceptions.nets.package import save_package
    from perceptions.train.loop import log

    best_epoch = None
    if (run_dir / rf.BEST).is_file():
        best = load_checkpoint(run_dir / rf.BEST)
        net.load_state_dict(best["model"])
        best_epoch = int(best["epoch"])
    net.eval()
    t0 = time.perf_counter()
    metrics, plots = {}, []
    if data.rows("test").size:
        log("evaluating on the test split...")
        frame = test_predictions(net, preprocess, data, config, device, precision)
        labels = data.table.iloc[data.rows("test")]
        metrics = evaluate_predictions(frame, labels, data.studies, data.scaling, votes=data.votes,
                                       truth=data.truth, score_fn=label_scorer(config.score_column),
                                       seed=config.seed)
        if is_main_process():
            frame.to_csv(run_dir / "test_predictions.csv", index=False, float_format="%.6g")
            plots = write_plots(frame, labels, data.studies, data.scaling, run_dir / "evaluation")
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
        "test": to_jsonable(metrics),
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }
    if is_main_process():
        meta = {"data": data_summary(data, config), "metrics": to_jsonable(metrics),
                "training": {"config": config.to_dict(), "best_epoch": best_epoch, "epochs_run": summary["epochs_run"],
                             "monitor": config.monitor, "run": run_dir.name}}
        # The folder is this run's own: a resumed run that died while exporting may replace its package.
        save_package(run_dir / "model", net, preprocess, data.scaling.to_dict(), meta, overwrite=True)
        rf.write_json(run_dir / rf.SUMMARY_FILE, summary)
    if metrics:
        log("test metrics:\n" + format_table(metrics))
    log(f"done in {timings['total_s']:.0f} s; run folder: {run_dir}")
    return summary
