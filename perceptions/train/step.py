"""One optimiser step and one epoch of them, and how a run is asked to stop between steps.

A batch is either images with their 1..10 targets (x, targets, ok) or vote pairs (xl, xr, tl, tr, study,
left_wins, ok); `model_fn` is what the batch goes through (the head on cached features, or the whole net via
the one inference path `perceptions.predict.inference.NetForward`, possibly in DDP).
"""
from __future__ import annotations

import logging
import signal
import threading
import time

import numpy as np
import torch

from perceptions import runtime
from perceptions.errors import PerceptionsError
from perceptions.progress import Progress
from perceptions.train.batches import images_per_batch, mix_seed
from perceptions.train.checkpoint import checkpoint_state, save_checkpoint
from perceptions.train.config import TrainConfig
from perceptions.train.losses import combined_loss
from perceptions.train.run_folder import LAST
from perceptions.train.schedule import Schedule, set_lr

log = logging.getLogger(__name__)


def batch_loss(model_fn, batch, config: TrainConfig, device) -> torch.Tensor:
    """Forward one image batch or vote-pair batch -> the loss `config.loss` asks for."""
    batch = [b.to(device, non_blocking=True) if torch.is_tensor(b) else b for b in batch]
    if len(batch) == 3:
        x, targets, _ = batch
        return combined_loss("regression", model_fn(x), targets, counts=global_counts(targets))
    xl, xr, tl, tr, study, left_wins, ok = batch
    n = len(xl)
    pred = model_fn(torch.cat([xl, xr]))
    rows = torch.arange(n, device=pred.device)
    ok = torch.as_tensor(ok, dtype=torch.bool, device=pred.device)
    left, right = pred[:n][rows, study][ok], pred[n:][rows, study][ok]
    targets = torch.cat([tl, tr])
    return combined_loss(config.loss, pred, targets, left, right, left_wins[ok],
                         ranking_weight=config.ranking_weight, ranking_scale=config.ranking_scale,
                         counts=global_counts(targets, ok))


def global_counts(targets: torch.Tensor, votes_ok: torch.Tensor | None = None) -> tuple[float, float] | None:
    """Under torchrun, (rated cells, votes) averaged over the ranks: each rank divides its loss sum by them, so
    the gradients DDP averages are those of the masked mean over the global batch (a rank with fewer rated
    cells no longer weighs its cells more). None in one process: each loss takes its own mean."""
    if not runtime.is_distributed():
        return None
    cells = float((~torch.isnan(targets)).sum())
    votes = float(votes_ok.sum()) if votes_ok is not None else 0.0
    mean_cells, mean_votes = runtime.mean_over_ranks(torch.tensor([cells, votes])).tolist()
    return max(mean_cells, 1e-12), max(mean_votes, 1e-12)


def train_step(model_fn, batch, optimizer, scaler, config: TrainConfig, device, params) -> float:
    """Forward, backward (scaled for fp16), clip, step. A non-finite loss stops the run on every rank."""
    loss = batch_loss(model_fn, batch, config, device)
    reported = runtime.mean_over_ranks(loss)  # the loss itself in one process
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


def run_epoch(net, model_fn, source, optimizer, scaler, config: TrainConfig, device, params, epoch: int,
              schedule: Schedule, state: dict, stop, run_dir) -> float:
    """One epoch of `source`'s batches from the step a resumed run stopped at; the mean training loss."""
    net.train()
    if config.freeze_bn:
        # Pretrained statistics stay: small batches estimate them badly, and the head was fitted to them.
        for m in net.backbone.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
    start = state["pos"] if state["epoch"] == epoch - 1 else 0
    # A resumed epoch's train_loss averages the steps run before the interruption too, as an unbroken one does.
    losses = [float(x) for x in state["epoch_losses"]] if start else []
    # dropout: a function of (seed, epoch, step), and of the rank where ranks see different images
    sharded = getattr(source, "world", 1) > 1
    seen, t0 = 0, time.perf_counter()
    with Progress(schedule.steps, f"epoch {epoch}/{schedule.total_epochs}", unit="step", initial=start,
                  enabled=config.progress, quiet=not runtime.is_main_process()) as progress:
        for i, batch in enumerate(source.batches(epoch, start), start):
            set_lr(optimizer, schedule.factor(epoch, i))
            torch.manual_seed(mix_seed(config.seed, epoch, i, 91, *((runtime.rank(),) if sharded else ())))
            losses.append(train_step(model_fn, batch, optimizer, scaler, config, device, params))
            seen += images_per_batch(batch)
            progress.update(1, loss=losses[-1], img_s=round(seen / (time.perf_counter() - t0), 1))
            if stop(epoch, i + 1):
                progress.close()
                state["pos"], state["epoch_losses"] = i + 1, losses
                save_checkpoint(checkpoint_state(net, optimizer, scaler, state, config), run_dir / LAST)
                log.info(f"stopped in epoch {epoch} after step {i + 1}; saved {run_dir / LAST}. Resume with:\n"
                         f"  perceptions train --resume {run_dir}")
                raise KeyboardInterrupt
    return float(np.mean(losses)) if losses else float("nan")


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
        return runtime.any_rank(asked or self.signalled)  # every rank stops after the same step
