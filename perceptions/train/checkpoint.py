"""Training checkpoints: complete (model, optimizer, epoch, step, best metric, config, RNG states) and atomic.

A checkpoint is written to a temporary file in the same folder, flushed to disk, then renamed over the old one
(`os.replace` is atomic on POSIX and Windows), so a crash or a kill at any moment leaves either the previous
checkpoint or the new one on disk, never half of one. Loading uses `torch.load(weights_only=True)`: a checkpoint
holds tensors and plain Python values only, so a crafted pickle cannot run code.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from perceptions.errors import PerceptionsError

FORMAT = "perceptions-checkpoint-1"


def save_checkpoint(state: dict, path) -> Path:
    """Write `state` to `path` atomically (temp file + fsync + os.replace + fsync of the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # Interrupted or failed mid-write: the previous checkpoint stays untouched; drop the partial temp file.
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    # A process killed mid-write (SIGKILL, power loss) cannot clean up: drop its temp files now that a complete
    # checkpoint of this name is in place (one process writes a run's checkpoints, so none is in progress).
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    return path


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint written by `save_checkpoint` (weights_only: a pickle that would run code is refused)."""
    from perceptions.nets.package import load_checkpoint as load_weights_only

    state = load_weights_only(path, map_location=map_location)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise PerceptionsError(f"{path}: not a perceptions training checkpoint")
    return state
