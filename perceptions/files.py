"""Small file helpers every writer shares: atomic writes, JSON with NaN as null, weights-only torch files.

An atomic write goes to a temporary file in the target's own folder, is flushed to disk (fsync), then renamed
over the target (`os.replace` is atomic on POSIX and Windows) and the folder is fsynced so the rename itself
survives a power cut. A crash or a kill at any moment leaves either the old file or the new one, never half of
one; a failed write removes its temporary file.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from perceptions.errors import PerceptionsError


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once, at import: os.umask can only be read by setting it


def usual_permissions(path) -> None:
    """Give `path` the permissions a plain open() would have (0666 less the umask): writers that make files
    through mkstemp or a library may leave them private."""
    os.chmod(path, 0o666 & ~_UMASK)


def fsync_folder(folder) -> None:
    """Make a rename inside `folder` durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a folder
    finally:
        os.close(fd)


def fsync_file(path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path` for a writer that takes a file name (pandas, safetensors, torch);
    on success it is fsynced and renamed over `path`, on failure removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        usual_permissions(tmp)  # mkstemp makes the file private (0600)
        yield Path(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


@contextmanager
def atomic_write(path, mode: str = "w", **open_kwargs):
    """`with atomic_write(p) as f: f.write(...)`: an open file whose content replaces `path` atomically."""
    if "b" not in mode:
        open_kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **open_kwargs) as f:
            yield f


def remove_stale_temps(path) -> None:
    """Temp files a killed writer of `path` left behind (SIGKILL cannot clean up): drop them once a complete
    `path` is in place. Only for files one process writes (a run's checkpoints)."""
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)


def jsonable(value):
    """`value` with NaN/inf as None (JSON has no NaN), numpy/torch scalars and arrays as Python values, paths
    as strings; dict keys become strings."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist) and not isinstance(value, (str, bytes)):
        return jsonable(value.tolist())  # numpy arrays and scalars, 0-d tensors
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def json_text(obj, indent: int | None = 2) -> str:
    """Strict JSON (no NaN tokens) of `obj` after `jsonable`."""
    return json.dumps(jsonable(obj), indent=indent, allow_nan=False)


def write_json(path, obj) -> Path:
    """JSON written atomically, NaN written as null."""
    with atomic_write(path) as f:
        f.write(json_text(obj) + "\n")
    return Path(path)


def read_json(path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PerceptionsError(f"{path}: not found") from None
    except (OSError, ValueError) as e:
        raise PerceptionsError(f"{path}: unreadable ({e})") from None


def read_torch_file(path, map_location="cpu"):
    """torch.load(weights_only=True): tensors, numbers, strings and containers only. A file that needs any
    other Python object (which is how a pickle runs code) is refused with one clear line."""
    import pickle
    import warnings

    import torch

    path = Path(path)
    if not path.is_file():
        raise PerceptionsError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of files it then refuses anyway.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()
        if first and first[0].startswith("Weights only load failed"):
            raise PerceptionsError(f"{path}: refused: it holds Python objects other than tensors and plain "
                                   "containers, which could run code when loaded (only weights are read)") from None
        raise PerceptionsError(f"{path}: not a readable checkpoint ({first[0] if first else e})") from None
    except Exception as e:  # noqa: BLE001 - weights_only ran no code; anything else is a damaged or foreign file
        first = str(e).strip().splitlines()
        detail = f"{type(e).__name__}: {first[0]}" if first else type(e).__name__
        raise PerceptionsError(f"{path}: not a readable checkpoint ({detail})") from None
