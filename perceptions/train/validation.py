"""What the loop measures after each epoch: predictions on the validation images and the metrics the best
epoch is chosen on (never the test split: that is looked at once, in finish.py).

Predictions go through the one inference path (`perceptions.predict.inference`), so a validation score is
computed exactly as `perceptions predict` would compute it.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from perceptions import runtime
from perceptions.data.datasets import ImageScores
from perceptions.errors import PerceptionsError
from perceptions.predict.inference import NetForward
from perceptions.progress import Progress
from perceptions.train.config import MONITORS, TrainConfig
from perceptions.train.losses import combined_loss, masked_regression_loss
from perceptions.train.prepare import TrainData

log = logging.getLogger(__name__)


@torch.inference_mode()
def predict_images(net, images: ImageScores, device, precision, batch_size: int, workers: int = 0,
                   desc: str = "predict", progress: bool | None = None) -> np.ndarray:
    """(N, S) outputs of the whole net on `images` (eval transform), float64, unclipped."""
    from torch.utils.data import DataLoader

    net.eval()
    forward = NetForward(net, precision)
    out = []
    loader = DataLoader(images, batch_size=batch_size, shuffle=False, num_workers=workers)
    with Progress(len(images), desc, enabled=progress, quiet=not runtime.is_main_process()) as bar:
        for x, _, _ in loader:
            out.append(forward(x.to(device)).float().cpu())
            bar.update(len(x))
    return torch.cat(out).double().numpy() if out else np.zeros((0, len(net.studies)))


def predict_dataset(net, images: ImageScores, config: TrainConfig, device, precision, desc: str) -> np.ndarray:
    """predict_images with the run's settings; under torchrun each rank predicts every N-th image and every
    rank gets all predictions, in order (each image is evaluated exactly once)."""
    return runtime.predict_sharded(
        lambda ds: predict_images(net, ds, device, precision, max(64, config.batch_size), config.workers,
                                  desc=desc, progress=config.progress), images)


@torch.inference_mode()
def predict_features(net, features: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    net.eval()
    return torch.cat([net.head(f).float().cpu() for f in features.split(batch_size)]).double().numpy()


def validation_metrics(pred: np.ndarray, data: TrainData, rows: np.ndarray, config: TrainConfig) -> dict:
    """val_loss (the training loss on validation images and votes), mean Spearman, +-1 decile and pairwise
    accuracy over studies."""
    from perceptions.evaluate import metrics as M
    from perceptions.evaluate.report import evaluate_predictions

    if rows.size == 0:
        return {}
    p = torch.as_tensor(pred, dtype=torch.float32)
    targets = torch.as_tensor(data.targets[rows])
    pairs = data.pairs("val") if config.loss != "regression" else None
    if pairs is not None and len(pairs):
        position = {int(r): i for i, r in enumerate(rows)}
        left = torch.as_tensor([position[int(r)] for r in pairs.left])
        right = torch.as_tensor([position[int(r)] for r in pairs.right])
        study = torch.as_tensor(pairs.study)
        loss = combined_loss(config.loss, p, targets, p[left, study], p[right, study],
                             torch.as_tensor(pairs.left_wins), config.ranking_weight, config.ranking_scale)
    elif config.loss == "regression":
        loss = masked_regression_loss(p, targets)
    else:  # the training loss needs votes between validation images and there are none (check_monitor)
        loss = float("nan")
    frame = prediction_frame(np.clip(pred, 1, 10), data, rows)
    labels = data.table.iloc[rows]
    report = evaluate_predictions(frame, labels, data.studies, data.scaling)["mean"]
    metrics = {"val_loss": float(loss), "val_spearman": report["spearman"],
               "val_within1": report["acc_within_1_decile"]}
    if data.votes is not None:
        accs = [M.pairwise_accuracy(frame.set_index("location_id")[f"{s}_score"], data.votes, study=s).accuracy
                for s in data.studies]
        metrics["val_pairwise"] = float(np.nanmean(accs)) if np.isfinite(accs).any() else float("nan")
    return metrics


def check_monitor(data: TrainData, config: TrainConfig) -> bool:
    """Whether the run can choose its best epoch on validation; a monitor that could never be computed is
    an error now, naming what is missing, rather than a run that silently keeps its last epoch."""
    if data.rows("val").size == 0:
        log.info("no validation images (--val-frac 0): the last epoch is the model; --monitor and --patience "
                 "have nothing to watch")
        return False
    val_pairs = len(data.pairs("val")) if data.votes is not None else 0
    needs_votes = config.monitor == "val_pairwise" or (config.monitor == "val_loss" and config.loss != "regression")
    if needs_votes and val_pairs == 0:
        what = "pairwise accuracy" if config.monitor == "val_pairwise" else f"the {config.loss} loss"
        raise PerceptionsError(f"--monitor {config.monitor} needs votes between validation images ({what}), and "
                               f"{config.data} has none; use --monitor val_spearman or more validation images")
    return True


def prediction_frame(scores: np.ndarray, data: TrainData, rows: np.ndarray):
    """path, location_id, city, lat, lon and `<study>_score` for `rows` of the label table."""
    frame = data.table.iloc[rows][["path", "location_id", "city", "lat", "lon"]].reset_index(drop=True)
    for j, s in enumerate(data.studies):
        frame[f"{s}_score"] = scores[:, j]
    return frame


def improved(value: float, best: float | None, monitor: str) -> bool:
    if value is None or not np.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if MONITORS[monitor] == "max" else value < best


def epoch_line(row: dict, total_epochs: int, is_best: bool) -> str:
    parts = [f"epoch {row['epoch']}/{total_epochs} ({row['phase']})", f"train_loss {row['train_loss']:.4f}"]
    for key in ("val_loss", "val_spearman", "val_within1", "val_pairwise"):
        if key in row and row[key] is not None and np.isfinite(row[key]):
            parts.append(f"{key} {row[key]:.4f}")
    parts.append(f"{row['seconds']:.1f} s")
    return "  ".join(parts) + ("  *best*" if is_best else "")
