"""The training loop: `train(config) -> run folder`.

Two phases share one step function: first `freeze_epochs` on cached backbone features (the backbone runs once,
the head trains in seconds), then `epochs` of fine-tuning the whole net with a lower learning rate for the
backbone. AdamW, linear warm-up then cosine decay per step, gradient clipping, one precision context from
runtime.py, a NaN loss stops the run. Each epoch ends with validation, a metrics row, the best checkpoint when
the monitored metric improves, and the last checkpoint. Ctrl-C stops after the current step and saves a
checkpoint to resume from (in the middle of an epoch: the batch order and augmentations are seeded by
(seed, epoch, position), so a resumed run computes exactly what the uninterrupted one would have).
"""
from __future__ import annotations

import dataclasses
import math
import signal
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from perceptions.data.datasets import CachedFeatures, ImageScores
from perceptions.errors import PerceptionsError
from perceptions.train import run_folder as rf
from perceptions.train.batches import (FeatureBatches, ImageBatches, images_per_batch, mix_seed, pair_order,
                                       regression_order)
from perceptions.train import distributed as dist
from perceptions.train.checkpoint import load_checkpoint
from perceptions.train.checkpoint import save_checkpoint as _save_checkpoint
from perceptions.train.config import IDENTITY_FIELDS, MONITORS, TrainConfig
from perceptions.train.losses import combined_loss, masked_regression_loss
from perceptions.train.prepare import SKIPPED_FILE, TrainData, prepare_data
from perceptions.train.runtime import (Precision, choose_device, choose_precision, cpu_threads, default_workers,
                                       init_distributed, is_distributed, is_main_process, keep_freed_memory, rank,
                                       rng_state, seed_everything, world_size)

MIN_LR_FRACTION = 0.02  # cosine decays to 2% of the peak, not to 0: the last steps still learn a little


def log(message: str) -> None:
    if is_main_process():
        print(message, flush=True)


def save_checkpoint(state: dict, path) -> None:
    """Under torchrun only rank 0 writes (every rank holds the same weights)."""
    if is_main_process():
        _save_checkpoint(state, path)


# ---------------------------------------------------------------------------------------------- schedule

def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine from 1 down to MIN_LR_FRACTION at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(net, config: TrainConfig, phase: str) -> torch.optim.AdamW:
    frozen = phase == "frozen" or config.backbone_lr_mult == 0
    net.set_backbone_trainable(not frozen)
    lr = config.head_lr_frozen if phase == "frozen" else config.lr
    groups = net.param_groups(lr, config.backbone_lr_mult, weight_decay=config.weight_decay)
    for g in groups:
        g["peak_lr"] = g["lr"]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))


def set_lr(optimizer, factor: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = g["peak_lr"] * factor


# ------------------------------------------------------------------------------------------------- steps

def batch_loss(model_fn, batch, config: TrainConfig, device) -> torch.Tensor:
    """Forward one image batch (x, t, ok) or pair batch (xl, xr, tl, tr, study, left_wins, ok) -> loss."""
    batch = [b.to(device, non_blocking=True) if torch.is_tensor(b) else b for b in batch]
    if len(batch) == 3:
        x, targets, _ = batch
        return combined_loss("regression", model_fn(_channels_last(x)), targets)
    xl, xr, tl, tr, study, left_wins, ok = batch
    n = len(xl)
    pred = model_fn(_channels_last(torch.cat([xl, xr])))
    rows = torch.arange(n, device=pred.device)
    ok = torch.as_tensor(ok, dtype=torch.bool, device=pred.device)
    left, right = pred[:n][rows, study][ok], pred[n:][rows, study][ok]
    return combined_loss(config.loss, pred, torch.cat([tl, tr]), left, right, left_wins[ok],
                         ranking_weight=config.ranking_weight, ranking_scale=config.ranking_scale)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x


class NetForward:
    """The whole net with the backbone under the precision context and the small head in fp32 outside it,
    as `perceptions predict` runs it: bf16 outputs would round scores to ~1/64 steps on the 1..10 scale."""

    def __init__(self, net, precision: Precision):
        self.net, self.precision = net, precision

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with self.precision.context():
            features = self.net.features(x)
        return self.net.head(features.float())


def train_step(model_fn, batch, optimizer, scaler, config: TrainConfig, device, params) -> float:
    loss = batch_loss(model_fn, batch, config, device)
    reported = dist.mean_over_ranks(loss)  # the loss itself in one process
    if not torch.isfinite(reported):
        raise PerceptionsError(f"the training loss became {reported.item()}; the run stops (try a lower --lr, "
                               "or --no-amp)")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if config.grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return float(reported.detach())


# ------------------------------------------------------------------------------------------- prediction

@torch.inference_mode()
def predict(net, images: ImageScores, device, precision: Precision, batch_size: int, workers: int = 0,
            desc: str | None = None, progress: bool = False) -> np.ndarray:
    """(N, S) outputs of the whole net on `images` (eval transform), float64, unclipped."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    net.eval()
    forward = NetForward(net, precision)
    out = []
    loader = DataLoader(images, batch_size=batch_size, shuffle=False, num_workers=workers)
    with tqdm(total=len(images), desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for x, _, _ in loader:
            out.append(forward(_channels_last(x.to(device))).float().cpu())
            bar.update(len(x))
    return torch.cat(out).double().numpy() if out else np.zeros((0, len(net.studies)))


@torch.inference_mode()
def predict_features(net, features: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    net.eval()
    return torch.cat([net.head(f).float().cpu() for f in features.split(batch_size)]).double().numpy()


# --------------------------------------------------------------------------------------------- validation

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
    else:
        loss = masked_regression_loss(p, targets)
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


# ---------------------------------------------------------------------------------------------- stopping

class StopRequest:
    """Ctrl-C (SIGINT) or a caller's `should_stop(epoch, step)` asks the loop to stop after the current step.

    A second Ctrl-C interrupts at once (the default handler is back after the first)."""

    def __init__(self, should_stop=None):
        self.should_stop = should_stop
        self.signalled = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signalled = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def __call__(self, epoch: int, step: int) -> bool:
        asked = bool(self.should_stop and self.should_stop(epoch, step))
        return dist.any_rank(asked or self.signalled)  # every rank stops after the same step


# -------------------------------------------------------------------------------------------------- train

def train(config: TrainConfig, should_stop=None) -> Path:
    """Train as `config` says and return the run folder (see run_folder.py for what it holds).

    should_stop(epoch, step) -> bool, checked after every step, stops the run as Ctrl-C does: the state is
    saved to checkpoints/last.pt and KeyboardInterrupt is raised; `config.resume = run_dir` continues it.
    Under `torchrun` the run spreads over the processes as distributed.py describes; files are rank 0's.
    """
    owns_group = init_distributed(config.device)  # under torchrun; a no-op in one process
    try:
        return _train(config, should_stop)
    finally:
        if owns_group:
            torch.distributed.destroy_process_group()


def _train(config: TrainConfig, should_stop=None) -> Path:
    timings = {}
    started = time.perf_counter()
    resume_state, run_dir = None, None
    if config.resume:
        run_dir, config, resume_state = open_resume(config)
    data = prepare_data(config)
    device = choose_device(config.device)
    precision = choose_precision(device, config.amp)
    if config.workers is None:
        config = config.replace(workers=default_workers(device))
    if device.type == "cpu":
        keep_freed_memory()
    seed_everything(config.seed)
    from perceptions.nets.perception_net import build_net

    net, preprocess = build_net(config.backbone, data.studies, weights=config.weights)
    if config.image_size:
        preprocess = dataclasses.replace(preprocess, input_size=int(config.image_size))
    if config.crop_pct:
        preprocess = dataclasses.replace(preprocess, crop_pct=float(config.crop_pct))
    net = net.to(device).to(memory_format=torch.channels_last)
    timings["prepare_s"] = time.perf_counter() - started
    if run_dir is None:
        def new_run_dir():
            folder = rf.create_run_dir(config.out, config.backbone)
            rf.write_json(folder / rf.CONFIG_FILE, {"config": config.to_dict(), "environment": rf.environment(),
                                                    "data": data.counts(), "notes": data.notes,
                                                    "world_size": world_size()})
            return folder
        run_dir = dist.on_main(new_run_dir)  # rank 0 creates it; the others get its path
    if data.skipped is not None and len(data.skipped) and is_main_process():
        data.skipped.to_csv(run_dir / SKIPPED_FILE, index=False)  # the note in the data line points here
    counts = data.counts()
    log(f"run folder: {run_dir}")
    log(f"data: {counts['train']} train / {counts['val']} val / {counts['test']} test images, studies "
        f"{', '.join(data.studies)}; {config.backbone} at {preprocess.input_size} px on {device} "
        f"({precision.name})" + "".join(f"; {n}" for n in data.notes))

    state = {"epoch": 0, "pos": 0, "best": None, "best_epoch": 0, "stale": 0, "phase": None, "stopped_early": "",
             "epoch_losses": []}
    if resume_state is not None:
        if int(resume_state.get("world_size", 1)) != world_size():
            raise PerceptionsError(f"--resume {run_dir}: that run ran on {resume_state.get('world_size', 1)} "
                                   f"process(es), this one on {world_size()}; resume with the same number "
                                   "(batch sizes are per process)")
        net.load_state_dict(resume_state["model"])
        state.update({k: resume_state[k] for k in state if k in resume_state})
        log(f"resuming after epoch {state['epoch']}" + (f", step {state['pos']}" if state["pos"] else ""))

    phases = [("frozen", 1, config.freeze_epochs),
              ("finetune", config.freeze_epochs + 1, config.freeze_epochs + config.epochs)]
    total_epochs = config.freeze_epochs + config.epochs
    with StopRequest(should_stop) as stop:
        for phase, first, last in phases:
            if last < first or state["epoch"] >= last or state["stopped_early"] == phase:
                continue
            t_phase = time.perf_counter()
            source, val_predict, model_fn = build_phase(phase, net, data, preprocess, config, device, precision,
                                                        timings)
            optimizer = make_optimizer(net, config, phase)
            # fp16 needs loss scaling (the frozen phase's head runs in fp32 and needs none).
            scaler = (precision if phase == "finetune" else Precision(device.type, None)).grad_scaler()
            if resume_state is not None and resume_state["phase"] == phase and state["epoch"] + 1 >= first:
                optimizer.load_state_dict(resume_state["optimizer"])
                scaler.load_state_dict(resume_state["scaler"])
            if state["phase"] != phase:
                state["stale"] = 0  # early stopping counts within a phase
            state["phase"] = phase
            steps = source.steps_per_epoch(first)
            total = steps * (last - first + 1)
            schedule = Schedule(first, steps, total, max(1, round(config.warmup_frac * total)), total_epochs)
            params = [p for p in net.parameters() if p.requires_grad]
            for epoch in range(max(first, state["epoch"] + 1), last + 1):
                t_epoch = time.perf_counter()
                with cpu_threads(1) if phase == "frozen" else nullcontext():
                    train_loss = run_epoch(net, model_fn, source, optimizer, scaler, config, device, params,
                                           epoch, schedule, state, stop, run_dir)
                row = {"epoch": epoch, "phase": phase, "train_loss": train_loss,
                       "lr": optimizer.param_groups[0]["lr"]}
                row.update(val_predict())
                row["seconds"] = round(time.perf_counter() - t_epoch, 2)
                value = row.get(config.monitor)
                if improved(value, state["best"], config.monitor):
                    state.update(best=float(value), best_epoch=epoch, stale=0)
                    save_checkpoint({"model": net.state_dict(), "epoch": epoch, "best": state["best"],
                                     "monitor": config.monitor}, run_dir / rf.BEST)
                else:
                    state["stale"] += 1
                if is_main_process():  # before last.pt: a run killed in between redoes (and rewrites) this row
                    rf.append_metrics(run_dir, row)
                    rf.plot_curves(run_dir, rf.read_metrics(run_dir), config.monitor)
                state.update(epoch=epoch, pos=0)
                save_checkpoint(checkpoint_state(net, optimizer, scaler, state, config), run_dir / rf.LAST)
                log(epoch_line(row, total_epochs, config.monitor, epoch == state["best_epoch"]))
                if config.patience and state["stale"] >= config.patience and epoch < last:
                    log(f"early stop: {config.monitor} has not improved for {config.patience} epochs")
                    state["stopped_early"] = phase
                    save_checkpoint(checkpoint_state(net, optimizer, scaler, state, config), run_dir / rf.LAST)
                    break
            timings[f"{phase}_s"] = timings.get(f"{phase}_s", 0.0) + time.perf_counter() - t_phase

    from perceptions.train.finish import finish_run

    dist.barrier()  # rank 0's checkpoints and metrics are on disk before any rank reads them
    finish_run(run_dir, net, preprocess, data, config, device, precision, timings, started)
    return run_dir


@dataclasses.dataclass
class Schedule:
    """Where an epoch sits in its phase: steps per epoch, the phase's first epoch, total and warm-up steps."""
    first: int
    steps: int
    total: int
    warmup: int
    total_epochs: int

    def step_of(self, epoch: int, i: int) -> int:
        return (epoch - self.first) * self.steps + i


def run_epoch(net, model_fn, source, optimizer, scaler, config, device, params, epoch, schedule: Schedule, state,
              stop, run_dir) -> float:
    from tqdm.auto import tqdm

    net.train()
    if config.freeze_bn:
        # Pretrained statistics stay: small batches estimate them badly, and the head was fitted to them.
        for m in net.backbone.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
    start = state["pos"] if state["epoch"] == epoch - 1 else 0
    # A resumed epoch's train_loss averages the steps run before the interruption too, as an unbroken one does.
    losses = [float(x) for x in state["epoch_losses"]] if start else []
    seen, t0 = 0, time.perf_counter()
    bar = tqdm(total=schedule.steps, initial=start, desc=f"epoch {epoch}/{schedule.total_epochs}", unit="step",
               leave=False, disable=not (config.progress and is_main_process()), dynamic_ncols=True)
    for i, batch in enumerate(source.batches(epoch, start), start):
        set_lr(optimizer, lr_factor(schedule.step_of(epoch, i), schedule.total, schedule.warmup))
        # dropout: a function of (seed, epoch, step), and of the rank where ranks see different images
        sharded = getattr(source, "world", 1) > 1
        torch.manual_seed(mix_seed(config.seed, epoch, i, 91, *((rank(),) if sharded else ())))
        losses.append(train_step(model_fn, batch, optimizer, scaler, config, device, params))
        seen += images_per_batch(batch)
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}", img_s=f"{seen / (time.perf_counter() - t0):.1f}")
        if stop(epoch, i + 1):
            bar.close()
            state["pos"], state["epoch_losses"] = i + 1, losses
            save_checkpoint(checkpoint_state(net, optimizer, scaler, state, config), run_dir / rf.LAST)
            log(f"stopped in epoch {epoch} after step {i + 1}; saved {run_dir / rf.LAST}. Resume with:\n"
                f"  perceptions train --resume {run_dir}")
            raise KeyboardInterrupt
    bar.close()
    return float(np.mean(losses)) if losses else float("nan")


def build_phase(phase, net, data: TrainData, preprocess, config: TrainConfig, device, precision, timings):
    """(batch source, validation function, what the batches go through) for one phase."""
    from perceptions.data.images import eval_transform

    train_rows, val_rows = data.rows("train"), data.rows("val")
    pairs = data.pairs("train") if config.loss != "regression" else None
    if pairs is not None and len(pairs) == 0:
        raise PerceptionsError(f"--loss {config.loss}: no vote has both its images in the training split")

    def images(rows, transform):
        return ImageScores(data.table["path"].to_numpy()[rows], data.targets[rows], transform,
                           preprocess.input_size, preprocess.resize_size)

    def order_fn(per_epoch_pairs):
        if pairs is not None:
            return lambda epoch: pair_order(pairs, per_epoch_pairs, config.seed, epoch)
        return lambda epoch: regression_order(train_rows, data.table, data.studies, config.oversample,
                                              config.seed, epoch)

    if phase == "frozen":
        # Features of the training and validation images, once, without augmentation.
        from torch.utils.data import DataLoader
        from tqdm.auto import tqdm

        t0 = time.perf_counter()
        rows = np.concatenate([train_rows, val_rows])
        mine = dist.shard(images(rows, eval_transform(preprocess)))  # every N-th image under torchrun
        loader = DataLoader(mine, batch_size=max(64, config.batch_size), num_workers=config.workers)
        with tqdm(total=len(mine), desc="backbone features", unit="img", leave=False,
                  disable=not (config.progress and is_main_process())) as bar:
            cached = CachedFeatures.compute(net.backbone, loader, device, precision, bar)
        if is_distributed():
            cached = CachedFeatures(*(dist.gather_rows(t, len(rows))
                                      for t in (cached.features, cached.targets, cached.ok)))
        timings["features_s"] = time.perf_counter() - t0
        log(f"backbone features of {len(rows)} images in {timings['features_s']:.1f} s")
        # Every rank runs the same head steps on the whole global batch (cheap; no gradient exchange).
        source = FeatureBatches(cached, rows, order_fn(len(pairs) if pairs is not None else 0),
                                config.head_batch_size * world_size(), pairs, device)
        val_features = cached.features[len(train_rows):].to(device)

        def validate():
            return validation_metrics(predict_features(net, val_features), data, val_rows, config)
        # The head is tiny: fp32 costs nothing here and keeps its small updates exact.
        return source, validate, net.head

    pairs_per_epoch = max(1, len(train_rows) // 2)
    # Batches name rows of the whole label table, so the dataset covers the table; only train rows are drawn.
    all_rows = np.arange(len(data.table))
    # A pair batch holds two images per vote: batch_size // 2 votes keep the images per step at batch_size.
    batch_size = config.batch_size if pairs is None else max(1, config.batch_size // 2)
    source = ImageBatches(images(all_rows, augmented_transform(preprocess, config.augment)),
                          order_fn(pairs_per_epoch), batch_size, config.seed, config.workers, pairs,
                          pin_memory=device.type == "cuda", rank=rank(), world=world_size())
    val_images = images(val_rows, eval_transform(preprocess))

    def validate():
        pred = dist.predict_sharded(  # each rank predicts every N-th image; all get all predictions
            lambda ds: predict(net, ds, device, precision, max(64, config.batch_size), config.workers,
                               desc="validate", progress=config.progress and is_main_process()), val_images)
        return validation_metrics(pred, data, val_rows, config)
    if is_distributed():  # DDP averages the gradients across ranks during backward
        # DDP syncs the parameters that require gradients when it is built: unfreeze the backbone first
        # (make_optimizer, called next, sets the same).
        net.set_backbone_trainable(config.backbone_lr_mult != 0)
        return source, validate, dist.wrap_ddp(NetForwardModule(net, precision), device)
    return source, validate, NetForward(net, precision)


class NetForwardModule(torch.nn.Module):
    """NetForward as a module, so DistributedDataParallel can wrap it (DDP syncs what goes through forward)."""

    def __init__(self, net, precision: Precision):
        super().__init__()
        self.net, self.precision = net, precision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.precision.context():
            features = self.net.features(x)
        return self.net.head(features.float())


def augmented_transform(preprocess, augment: str):
    """The fine-tuning transform: the weights' train preset (random resized crop + flip), or the eval
    transform after a random flip (street scenes are left-right symmetric), or the eval transform alone."""
    from torchvision.transforms import v2

    from perceptions.data.images import eval_transform, train_transform

    if augment == "crop":
        return train_transform(preprocess)
    if augment == "flip":
        return v2.Compose([v2.RandomHorizontalFlip(), eval_transform(preprocess)])
    return eval_transform(preprocess)


def checkpoint_state(net, optimizer, scaler, state: dict, config: TrainConfig) -> dict:
    return {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            **{k: state[k] for k in ("epoch", "pos", "best", "best_epoch", "stale", "phase", "stopped_early",
                                     "epoch_losses")},
            "config": config.to_dict(), "rng": rng_state(), "world_size": world_size()}


def epoch_line(row: dict, total_epochs: int, monitor: str, is_best: bool) -> str:
    parts = [f"epoch {row['epoch']}/{total_epochs} ({row['phase']})", f"train_loss {row['train_loss']:.4f}"]
    for key in ("val_loss", "val_spearman", "val_within1", "val_pairwise"):
        if key in row and row[key] is not None and np.isfinite(row[key]):
            parts.append(f"{key} {row[key]:.4f}")
    parts.append(f"{row['seconds']:.1f} s")
    return "  ".join(parts) + ("  *best*" if is_best else "")


# ---------------------------------------------------------------------------------------------- resuming

def open_resume(config: TrainConfig):
    """(run_dir, config to continue with, last checkpoint). The identity of the run (data, backbone, studies,
    split...) must match the folder's; only options such as --epochs, --workers or --device may change."""
    from perceptions.studies import parse_studies

    run_dir = Path(config.resume)
    if not run_dir.is_dir():
        raise PerceptionsError(f"--resume {run_dir}: no such run folder")
    saved = rf.read_json(run_dir / rf.CONFIG_FILE).get("config")
    if not isinstance(saved, dict):
        raise PerceptionsError(f"{run_dir / rf.CONFIG_FILE}: holds no training config")
    saved_cfg = TrainConfig.from_dict(saved)
    if (run_dir / rf.SUMMARY_FILE).is_file():
        raise PerceptionsError(f"--resume {run_dir}: that run has finished (it has {rf.SUMMARY_FILE}); "
                               "nothing to resume")
    if not (run_dir / rf.LAST).is_file():
        raise PerceptionsError(f"--resume {run_dir}: it has no {rf.LAST} to resume from")

    def same(field):
        a, b = getattr(saved_cfg, field), getattr(config, field)
        if field == "data":
            return Path(a).resolve() == Path(b).resolve()
        if field == "studies":
            return parse_studies(a) == parse_studies(b)
        return a == b
    differ = [f for f in IDENTITY_FIELDS if not same(f)]
    if differ:
        f = differ[0]
        raise PerceptionsError(f"--resume {run_dir}: that run was made with {f} = {getattr(saved_cfg, f)!r}, not "
                               f"{getattr(config, f)!r}; resume with the same settings or start a new run")
    state = load_checkpoint(run_dir / rf.LAST)
    return run_dir, config.replace(resume=str(run_dir)), state
