"""The training loop: `train(config) -> run folder`.

Two phases share one step function (step.py): first `freeze_epochs` on cached backbone features (the backbone
runs once, the head trains in seconds), then `epochs` of fine-tuning the backbone past its first
`frozen_stages` stages with the head (phases.py; by default on their cached output, stage_cache.py). AdamW with
warm-up and cosine decay per step (schedule.py), gradient clipping, one precision context from
`perceptions.runtime`, a NaN loss stops the run. Each epoch ends with validation, a metrics row, the best
checkpoint when the monitored validation metric improves, and the last checkpoint (checkpoint.py). Ctrl-C stops
after the current step and saves a checkpoint to resume from (in the middle of an epoch: the batch order and
augmentations are seeded by (seed, epoch, position), so a resumed run computes exactly what the uninterrupted
one would have). The test split is looked at once, at the end (finish.py).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from perceptions import runtime
from perceptions.errors import PerceptionsError
from perceptions.files import write_json
from perceptions.nets.backbones import split_backbone
from perceptions.nets.perception_net import build_net
from perceptions.train import run_folder as rf
from perceptions.train.checkpoint import checkpoint_state, open_resume, save_checkpoint
from perceptions.train.config import TrainConfig
from perceptions.train.finish import finish_run
from perceptions.train.init_model import init_config, load_init_weights
from perceptions.train.phases import build_phase
from perceptions.train.prepare import prepare_data, write_image_check, write_splits
from perceptions.train.schedule import Schedule, make_optimizer
from perceptions.train.step import StopRequest, run_epoch
from perceptions.train.validation import check_monitor, epoch_line, improved

log = logging.getLogger(__name__)


def train(config: TrainConfig, should_stop=None) -> Path:
    """Train as `config` says and return the run folder (see run_folder.py for what it holds).

    should_stop(epoch, step) -> bool, checked after every step, stops the run as Ctrl-C does: the state is
    saved to checkpoints/last.pt and KeyboardInterrupt is raised; `config.resume = run_dir` continues it.
    Under `torchrun` the run spreads over the processes as perceptions/runtime.py describes; files are rank 0's.
    """
    owns_group = runtime.init_distributed(config.device)  # under torchrun; a no-op in one process
    try:
        run_dir = _train(config, should_stop)
        # Every rank leaves together, after rank 0 has written the package (not after an error, when the other
        # ranks may never arrive). Gloo can still abort a rank in the interpreter's teardown after all this;
        # the command line leaves without one under torchrun (perceptions/cli.py, leave_rank).
        runtime.barrier()
        return run_dir
    finally:
        if owns_group:
            torch.distributed.destroy_process_group()


def _train(config: TrainConfig, should_stop=None) -> Path:
    timings = {}
    started = time.perf_counter()
    resume_state, run_dir = None, None
    if config.resume:
        run_dir, config, resume_state = open_resume(config)
    if config.init_model:  # the package's backbone and input size: its weights expect them (init_model.py)
        config = init_config(config)
    config = config.replace(frozen_stages=config.frozen_stage_count)  # recorded as a number in config.json
    data = prepare_data(config)
    watch = check_monitor(data, config)  # False: no validation images, the last epoch is the model
    device = runtime.choose_device(config.device)
    precision = runtime.choose_precision(device, config.amp_on(device))
    if config.workers is None:
        config = config.replace(workers=runtime.default_workers(device))
    if device.type == "cpu":
        runtime.keep_freed_memory()
    runtime.seed_everything(config.seed)
    net, preprocess = build_net(config.backbone, data.studies, weights="none" if config.init_model else config.weights)
    if config.init_model:
        preprocess = load_init_weights(net, config)
    if config.image_size:
        preprocess = dataclasses.replace(preprocess, input_size=int(config.image_size))
    if config.crop_pct:
        preprocess = dataclasses.replace(preprocess, crop_pct=float(config.crop_pct))
    if config.crop_bottom:  # recorded in the package, so predict and evaluate cut the same strip
        preprocess = dataclasses.replace(preprocess, crop_bottom=int(config.crop_bottom))
    if config.frozen_stage_count:  # a count the backbone does not have stops the run before anything is written
        split_backbone(net.backbone, config.frozen_stage_count)
    net = net.to(device).to(memory_format=torch.channels_last)
    timings["prepare_s"] = time.perf_counter() - started
    if run_dir is None:
        def new_run_dir():
            folder = rf.create_run_dir(config.out, config.backbone)
            write_json(folder / rf.CONFIG_FILE, {"config": config.to_dict(), "environment": rf.environment(),
                                                 "data": data.counts(), "notes": data.notes,
                                                 "world_size": runtime.world_size()})
            return folder
        run_dir = runtime.on_main(new_run_dir)  # rank 0 creates it; the others get its path
    if runtime.is_main_process():
        write_image_check(data, run_dir)  # the note in the data line points here; --resume reads it back
        write_splits(data, run_dir)       # location_id,split: which images evaluation may score as unseen
    counts = data.counts()
    log.info(f"run folder: {run_dir}")
    log.info(f"data: {counts['train']} train / {counts['val']} val / {counts['test']} test images, studies "
             f"{', '.join(data.studies)}; {config.backbone} at {preprocess.input_size} px on {device} "
             f"({precision.name})" + "".join(f"; {n}" for n in data.notes))

    state = {"epoch": 0, "pos": 0, "best": None, "best_epoch": 0, "stale": 0, "phase": None, "stopped_early": "",
             "epoch_losses": []}
    if resume_state is not None:
        if int(resume_state.get("world_size", 1)) != runtime.world_size():
            raise PerceptionsError(f"--resume {run_dir}: that run ran on {resume_state.get('world_size', 1)} "
                                   f"process(es), this one on {runtime.world_size()}; resume with the same number "
                                   "(batch sizes are per process)")
        net.load_state_dict(resume_state["model"])
        state.update({k: resume_state[k] for k in state if k in resume_state})
        log.info(f"resuming after epoch {state['epoch']}" + (f", step {state['pos']}" if state["pos"] else ""))

    shared = {}  # what the phases cache (early-stage maps, backbone features), shared with finish_run
    with StopRequest(should_stop) as stop:
        for phase, first, last in config.phases():
            if last < first or state["epoch"] >= last or state["stopped_early"] == phase:
                continue
            t_phase = time.perf_counter()
            run_phase(phase, first, last, net, data, preprocess, config, device, precision, timings, state,
                      resume_state, stop, run_dir, watch, shared)
            timings[f"{phase}_s"] = timings.get(f"{phase}_s", 0.0) + time.perf_counter() - t_phase

    runtime.barrier()  # rank 0's checkpoints and metrics are on disk before any rank reads them
    finish_run(run_dir, net, preprocess, data, config, device, precision, timings, started, shared)
    return run_dir


def run_phase(phase, first, last, net, data, preprocess, config: TrainConfig, device, precision, timings,
              state, resume_state, stop, run_dir, watch: bool = True, shared: dict | None = None) -> None:
    """Epochs `first`..`last` of one phase, from where `state` says the run is."""
    source, validate, model_fn = build_phase(phase, net, data, preprocess, config, device, precision, timings,
                                             shared)
    optimizer = make_optimizer(net, config, phase)
    # fp16 needs loss scaling (the frozen phase's head runs in fp32 and needs none).
    scaler = (precision if phase == "finetune" else runtime.Precision(device.type, None)).grad_scaler()
    if resume_state is not None and resume_state["phase"] == phase and state["epoch"] + 1 >= first:
        optimizer.load_state_dict(resume_state["optimizer"])
        scaler.load_state_dict(resume_state["scaler"])
    if state["phase"] != phase:
        state["stale"] = 0  # early stopping counts within a phase
    state["phase"] = phase
    total_epochs = config.freeze_epochs + config.epochs
    schedule = Schedule.for_phase(first, last, source.steps_per_epoch(first), config.warmup_frac, total_epochs)
    params = [p for p in net.parameters() if p.requires_grad]
    for epoch in range(max(first, state["epoch"] + 1), last + 1):
        t_epoch = time.perf_counter()
        with runtime.cpu_threads(1) if phase == "frozen" else nullcontext():
            train_loss = run_epoch(net, model_fn, source, optimizer, scaler, config, device, params, epoch,
                                   schedule, state, stop, run_dir)
        row = {"epoch": epoch, "phase": phase, "train_loss": train_loss, "lr": optimizer.param_groups[0]["lr"]}
        row.update(validate())
        row["seconds"] = round(time.perf_counter() - t_epoch, 2)
        value = row.get(config.monitor)
        if improved(value, state["best"], config.monitor):
            state.update(best=float(value), best_epoch=epoch, stale=0)
            save_checkpoint({"model": net.state_dict(), "epoch": epoch, "best": state["best"],
                             "monitor": config.monitor}, run_dir / rf.BEST)
        elif watch:
            state["stale"] += 1
        if runtime.is_main_process():  # before last.pt: a run killed in between redoes (and rewrites) this row
            rf.append_metrics(run_dir, row)
            rf.plot_curves(run_dir, rf.read_metrics(run_dir), config.monitor)
        state.update(epoch=epoch, pos=0)
        save_checkpoint(checkpoint_state(net, optimizer, scaler, state, config), run_dir / rf.LAST)
        log.info(epoch_line(row, total_epochs, epoch == state["best_epoch"]))
        if config.patience and state["stale"] >= config.patience and epoch < last:
            log.info(f"early stop: {config.monitor} has not improved for {config.patience} epochs")
            state["stopped_early"] = phase
            save_checkpoint(checkpoint_state(net, optimizer, scaler, state, config), run_dir / rf.LAST)
            break
