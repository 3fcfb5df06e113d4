"""A loaded model package: `load_model(...)` -> `PerceptionModel`, whose `predict(images)` gives a DataFrame.

The package's metadata says how to preprocess images (size, crop, mean/std) and how to turn scores into
deciles (the edges fitted on the model's own training-split predictions, meta["prediction_deciles"], when the
package has them; older packages fall back to the label edges of meta["scaling"]); the net runs through the one
inference path (`predict.inference`), so its scores are the numbers training's validation, `evaluate` and
`explain` compute for the same image.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from perceptions.errors import PerceptionsError
from perceptions.nets.package import META_FILE, WEIGHTS_FILE, load_package
from perceptions.predict.inference import NetForward, PredictionDeciles, to_deciles, to_scores
from perceptions.predict.pipeline import predict_paths
from perceptions.runtime import choose_device, keep_freed_memory

# Where the model comes from when no path is given (`resolve_model_dir`): this environment variable, else the
# shipped model: inside an installed package (setup.py copies the repository's model/ into the wheel as
# perceptions/_model/), or, in a clone or an editable install, the repository's model/ itself.
MODEL_ENV = "PERCEPTIONS_MODEL"
_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # perceptions/
PACKAGED_MODEL_DIR = _PACKAGE_DIR / "_model"
CLONE_MODEL_DIR = _PACKAGE_DIR.parent / "model"


def _shipped_model_dir() -> Path:
    if (PACKAGED_MODEL_DIR / META_FILE).is_file():
        return PACKAGED_MODEL_DIR
    if (_PACKAGE_DIR.parent / "pyproject.toml").is_file():  # a clone: perceptions/ sits next to pyproject.toml
        return CLONE_MODEL_DIR
    return PACKAGED_MODEL_DIR


DEFAULT_MODEL_DIR = _shipped_model_dir()


@dataclass
class PerceptionModel:
    """A loaded model package: the net plus what it needs to turn images into scores and deciles."""

    net: torch.nn.Module
    meta: dict
    device: torch.device
    path: Path | None = None
    studies: list[str] = field(init=False)

    def __post_init__(self):
        from perceptions.data.images import NormalizeUint8, Preprocess, eval_transform
        from perceptions.data.labels import Scaling

        self.studies = list(self.meta["studies"])
        self.preprocess = Preprocess.from_dict(self.meta["preprocess"])
        self.scaling = Scaling.from_dict(self.meta["scaling"])  # the label scale and the label decile edges
        # Edges fitted on the model's training predictions: predicted deciles then hold ~a tenth each, as label
        # deciles do. None for packages made before they were stored: deciles then use the label edges.
        stored = self.meta.get("prediction_deciles")
        self.prediction_deciles = PredictionDeciles.from_dict(stored) if stored is not None else None
        if self.prediction_deciles is not None and set(self.studies) - set(self.prediction_deciles.studies):
            missing = sorted(set(self.studies) - set(self.prediction_deciles.studies))
            raise PerceptionsError(f"invalid prediction_deciles in model package: no edges for {', '.join(missing)}")
        self.transform = eval_transform(self.preprocess)
        # predict's loader: uint8 crops, normalised a whole batch at a time on the device by score_batch (a
        # quarter of the bytes to stack and move, and one vectorised op instead of one per image).
        self.crop_transform = eval_transform(self.preprocess, normalize=False)
        self.normalize = NormalizeUint8(self.preprocess.mean, self.preprocess.std)
        self.net.eval()

    def __repr__(self) -> str:
        backbone = self.meta.get("backbone", "?")
        return (f"PerceptionModel({backbone}, studies={self.studies}, input_size={self.preprocess.input_size}, "
                f"deciles={self.decile_source}, device={self.device}, "
                f"path={str(self.path) if self.path else None})")

    @property
    def decile_edges(self):
        """What `deciles` cuts scores with: the PredictionDeciles when the package has them, else the Scaling."""
        return self.prediction_deciles if self.prediction_deciles is not None else self.scaling

    @property
    def decile_source(self) -> str:
        """'training predictions' (calibrated: each predicted decile holds ~a tenth of the training images) or
        'label edges' (an older package: predicted deciles 1 and 10 are under-populated)."""
        return "training predictions" if self.prediction_deciles is not None else "label edges"

    def predict(self, images, batch_size: int = 64, num_workers: int | None = None, progress: bool = False,
                precision: str = "auto") -> pd.DataFrame:
        """Score a PIL image, a path, or a list of either. Returns one row per readable image (see
        `pipeline.predict_paths`); unreadable ones are in `df.attrs["skipped"]` (a DataFrame of path, reason).
        num_workers None: decoding processes only when there is more than one batch of files."""
        if isinstance(images, (str, os.PathLike)) or not isinstance(images, (list, tuple)):
            images = [images]
        if any(not isinstance(i, (str, os.PathLike)) for i in images) or len(images) <= batch_size:
            num_workers = 0 if num_workers is None else num_workers  # not worth starting processes
        if any(not isinstance(i, (str, os.PathLike)) for i in images):
            num_workers = 0  # in-memory images stay in this process
        df, skipped = predict_paths(self, list(images), batch_size=batch_size, num_workers=num_workers,
                                    progress=progress, precision=precision)
        df.attrs["skipped"] = skipped
        return df

    def score_batch(self, batch: torch.Tensor, precision) -> np.ndarray:
        """(B, 3, S, S) normalised float tensor, or uint8 crops (`crop_transform`'s) normalised on the device
        -> (B, studies) float64 scores on 1..10, rounded (`inference.to_scores`)."""
        forward = NetForward(self.net, precision, normalize=self.normalize)
        with torch.inference_mode():
            return to_scores(forward(batch.to(self.device, non_blocking=True)))

    def deciles(self, scores: np.ndarray) -> np.ndarray:
        """(N, studies) scores -> (N, studies) int64 deciles 1..10 by `decile_edges` (see `decile_source`)."""
        return to_deciles(scores, self.decile_edges, self.studies)


def resolve_model_dir(path=None) -> Path:
    """The model package folder to load, in this order: an explicit `path`; the PERCEPTIONS_MODEL environment
    variable (when set and not empty); the shipped model (`DEFAULT_MODEL_DIR`). Raises PerceptionsError, one
    line naming the folder (and the variable when it came from there), when that is no model package."""
    return _resolve(path)[0]


def _resolve(path) -> tuple[Path, str | None]:
    """(folder, the PERCEPTIONS_MODEL value it came from or None)."""
    if path is not None:
        folder = Path(path)
        if not folder.exists():
            raise PerceptionsError(f"model package {folder} does not exist (check the path)")
        if not folder.is_dir():
            raise PerceptionsError(f"model package {folder} is not a folder (a package is a folder with weights "
                                   "and a JSON file)")
        return folder, None
    named = os.environ.get(MODEL_ENV, "").strip()
    if named:
        folder = Path(named).expanduser()
        if not folder.is_dir():
            what = "not a folder" if folder.exists() else "no such folder"
            raise PerceptionsError(f"{MODEL_ENV}={named}: {what} (point it at a model package folder, or unset "
                                   "it to use the shipped model)")
        missing = [name for name in (META_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
        if missing:
            raise PerceptionsError(f"{MODEL_ENV}={named}: not a model package (no {' or '.join(missing)}; a "
                                   f"package is the model/ folder `perceptions train` writes)")
        return folder, named
    folder = DEFAULT_MODEL_DIR
    if not (folder / META_FILE).is_file():
        raise PerceptionsError(f"no model package in {folder} (this copy ships none): train one with "
                               f"`perceptions train` and pass its package folder with --model or {MODEL_ENV}")
    return folder, None


def load_model(path=None, device="cpu") -> PerceptionModel:
    """Load a model package folder onto `device` ('cpu', 'cuda', 'auto'). path None: $PERCEPTIONS_MODEL when
    set, else the shipped model (see `resolve_model_dir`)."""
    folder, named = _resolve(path)
    dev = choose_device(str(device)) if not isinstance(device, torch.device) else device
    try:
        net, meta = load_package(folder, device=dev)
    except PerceptionsError as exc:
        if named is None:
            raise
        raise PerceptionsError(f"{MODEL_ENV}={named}: {exc}") from None
    net = net.to(dev).to(memory_format=torch.channels_last)
    # Scoring allocates the same large buffers batch after batch (a normalised batch of 64 at 128 px is 12.6 MB,
    # the activations more); glibc would return each to the OS and page-fault it back in for the next batch,
    # which more than halved predict's speed on a CPU (benchmarks/RESULTS.md, section 2).
    keep_freed_memory()
    return PerceptionModel(net=net, meta=meta, device=dev, path=folder)
