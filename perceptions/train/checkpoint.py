"""Training checkpoints, complete and atomic, and resuming a run from them.

A checkpoint holds model, optimizer, scaler, epoch, step within the epoch, best metric, config and every RNG
state. It is written through `perceptions.files.atomic_write` (temp file, fsync, rename), so a crash or a kill at
any moment leaves either the previous checkpoint or the new one on disk, never half of one. Loading uses
`torch.load(weights_only=True)`: a checkpoint holds tensors and plain Python values only, so a crafted pickle
cannot run code.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from perceptions import runtime
from perceptions.errors import PerceptionsError
from perceptions.files import atomic_write, read_json, read_torch_file, remove_stale_temps
from perceptions.train import run_folder as rf
from perceptions.train.config import IDENTITY_FIELDS, TrainConfig

log = logging.getLogger(__name__)

FORMAT = "perceptions-checkpoint-1"
# What a checkpoint carries of the loop's state (besides model, optimizer, scaler, config and RNG).
STATE_KEYS = ("epoch", "pos", "best", "best_epoch", "stale", "phase", "stopped_early", "epoch_losses")


def save_checkpoint(state: dict, path) -> Path:
    """Write `state` to `path` atomically. Under torchrun only rank 0 writes (every rank holds the same
    weights)."""
    path = Path(path)
    if not runtime.is_main_process():
        return path
    with atomic_write(path, "wb") as f:
        torch.save({"format": FORMAT, **state}, f)
    # A process killed mid-write (SIGKILL, power loss) cannot clean up: drop its temp files now that a complete
    # checkpoint of this name is in place (one process writes a run's checkpoints, so none is in progress).
    remove_stale_temps(path)
    return path


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint written by `save_checkpoint` (weights_only: a pickle that would run code is refused)."""
    state = read_torch_file(path, map_location=map_location)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise PerceptionsError(f"{path}: not a perceptions training checkpoint")
    return state


def checkpoint_state(net, optimizer, scaler, state: dict, config: TrainConfig) -> dict:
    return {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            **{k: state[k] for k in STATE_KEYS}, "config": config.to_dict(), "rng": runtime.rng_state(),
            "world_size": runtime.world_size()}


def open_resume(config: TrainConfig):
    """(run_dir, config to continue with, last checkpoint). The identity of the run (data, backbone, studies,
    split...) must match the folder's; only options such as --epochs, --workers or --device may change."""
    from perceptions.studies import parse_studies

    run_dir = Path(config.resume)
    if not run_dir.is_dir():
        raise PerceptionsError(f"--resume {run_dir}: no such run folder")
    saved = read_json(run_dir / rf.CONFIG_FILE).get("config")
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
        raise PerceptionsError(f"--resume {run_dir}: --{f.replace('_', '-')} cannot change when resuming (the run "
                               f"was made with {getattr(saved_cfg, f)!r}, not {getattr(config, f)!r}); leave it out "
                               "or start a new run")
    state = load_checkpoint(run_dir / rf.LAST)
    for field in dataclasses.fields(TrainConfig):  # what the typed options changed, once they are known safe
        before, after = getattr(saved_cfg, field.name), getattr(config, field.name)
        if field.name != "resume" and before != after:
            log.info(f"--resume: {field.name} {before!r} -> {after!r}")
    return run_dir, config.replace(resume=str(run_dir)), state
