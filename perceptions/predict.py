"""Score new street images with a trained model package: `load_model(...).predict(images)` -> DataFrame.

The pipeline: DataLoader workers decode and resize (open_rgb + the package's eval transform) while the main
process runs the net in batches under `inference_mode`, channels_last and the runtime's precision context
(bf16 autocast where the CPU has it natively). One row per readable image, in input order; unreadable files
are collected as (path, reason) and never stop a run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from perceptions.errors import PerceptionsError

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "model"
SCORE_DECIMALS = 4  # the 1..10 scale to 1e-4: finer than bf16 resolves, and stable across batch shapes


def default_workers(device="cpu") -> int:
    """Decoding processes for predict. None on a CPU, as in training: the net's threads already use every core,
    and a worker that takes one stalls them all (measured on 2 cores at 224 px: 0.79 of the bare net's images/s
    decoding in-process between batches, 0.62 with one worker; `benchmarks/bench_predict.py`). On a GPU a few
    workers keep it fed; under torchrun the node's cores are shared by its processes."""
    if torch.device(device).type == "cpu":
        return 0
    cores = (os.cpu_count() or 2) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(4, cores // 2))


# -------------------------------------------------------------------------------------------------- model

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
        self.scaling = Scaling.from_dict(self.meta["scaling"])
        self.transform = eval_transform(self.preprocess)
        # predict's loader: uint8 crops, normalised a whole batch at a time on the device by score_batch (a
        # quarter of the bytes to stack and move, and one vectorised op instead of one per image).
        self.crop_transform = eval_transform(self.preprocess, normalize=False)
        self.normalize = NormalizeUint8(self.preprocess.mean, self.preprocess.std)
        self.net.eval()

    def __repr__(self) -> str:
        backbone = self.meta.get("backbone", "?")
        return (f"PerceptionModel({backbone}, studies={self.studies}, input_size={self.preprocess.input_size}, "
                f"device={self.device}, path={str(self.path) if self.path else None})")

    def predict(self, images, batch_size: int = 64, num_workers: int | None = None, progress: bool = False,
                precision: str = "auto") -> pd.DataFrame:
        """Score a PIL image, a path, or a list of either. Returns one row per readable image (see
        `predict_paths`); unreadable ones are in `df.attrs["skipped"]` (a DataFrame of path, reason).
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
        """(B, 3, S, S) normalised float tensor, or uint8 crops (`crop_transform`'s) normalised here ->
        (B, studies) float64 scores on 1..10, rounded."""
        batch = batch.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        if batch.dtype == torch.uint8:
            batch = self.normalize(batch)
        with torch.inference_mode():
            if hasattr(self.net, "features") and hasattr(self.net, "head"):
                # The backbone in low precision; the small head in fp32, so scores are not rounded to bf16's
                # ~1/64 steps on the 1..10 scale.
                with precision.context():
                    features = self.net.features(batch)
                out = self.net.head(features.float())
            else:
                with precision.context():
                    out = self.net(batch)
        scores = out.float().cpu().numpy().astype(np.float64)
        return np.round(np.clip(scores, 1.0, 10.0), SCORE_DECIMALS)

    def deciles(self, scores: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(self.scaling.decile(scores[:, j], s), dtype=np.int64)
                         for j, s in enumerate(self.studies)], axis=1)


def load_model(path=None, device="cpu") -> PerceptionModel:
    """Load a model package folder (None: the repo's shipped `model/`) onto `device` ('cpu', 'cuda', 'auto')."""
    from perceptions.nets.package import load_package
    from perceptions.train.runtime import choose_device

    folder = Path(path) if path is not None else DEFAULT_MODEL_DIR
    if path is None and not (folder / "model.json").is_file():
        raise PerceptionsError(f"no model package in {folder} (this copy ships none): train one with "
                               "`perceptions train` and pass its package folder with --model")
    if not folder.exists():
        raise PerceptionsError(f"model package {folder} does not exist (check the path)")
    if not folder.is_dir():
        raise PerceptionsError(f"model package {folder} is not a folder (a package is a folder with weights "
                               "and a JSON file)")
    dev = choose_device(str(device)) if not isinstance(device, torch.device) else device
    net, meta = load_package(folder, device=dev)
    net = net.to(dev).to(memory_format=torch.channels_last)
    return PerceptionModel(net=net, meta=meta, device=dev, path=folder)


# ---------------------------------------------------------------------------------------------- pipeline

class ImageItems(Dataset):
    """Paths (or in-memory PIL images) -> (index, tensor or None, reason). Never raises for a bad file."""

    def __init__(self, items, transform, min_side: int):
        self.items, self.transform, self.min_side = items, transform, min_side

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        from perceptions.data.images import open_rgb

        item = self.items[i]
        try:
            if isinstance(item, (str, os.PathLike)):
                image = open_rgb(item, min_side=self.min_side)
            else:
                image = pil_to_rgb(item)
            return i, self.transform(image), ""
        except PerceptionsError as e:
            return i, None, getattr(e, "problem", str(e))
        except Exception as e:  # noqa: BLE001 - one odd file must never stop a million-image run
            return i, None, f"{type(e).__name__}: {e}"


def pil_to_rgb(image):
    """An in-memory PIL image -> upright 8-bit RGB, by the same rules as open_rgb for files."""
    from PIL import Image, ImageOps

    from perceptions.data.images import _to_rgb

    if not isinstance(image, Image.Image):
        raise PerceptionsError(f"expected a path or a PIL image, got {type(image).__name__}")
    return _to_rgb(ImageOps.exif_transpose(image))


def collate_items(samples):
    """Stack the readable images of a batch; keep the failures aside."""
    ok = [(i, t) for i, t, _ in samples if t is not None]
    failed = [(i, reason) for i, t, reason in samples if t is None]
    # Stacked straight into channels_last (NHWC memory), the layout the net runs in: the copy happens here,
    # in the decoding worker, not in the main process that runs the net.
    tensor = torch.stack([t.permute(1, 2, 0) for _, t in ok]).permute(0, 3, 1, 2) if ok else None
    return [i for i, _ in ok], tensor, failed


def iter_batches(model: PerceptionModel, items, batch_size=64, num_workers=None, progress=True,
                 precision="auto", desc="predict"):
    """Yield (rows DataFrame, failures list[(item index, reason)]) per batch, in input order.

    Rows carry an `_index` column (position in `items`) so callers can restore input order."""
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise PerceptionsError(f"--batch-size must be at least 1, got {batch_size}")
    num_workers = default_workers(model.device) if num_workers is None else int(num_workers)
    num_workers = min(num_workers, max(0, (len(items) + batch_size - 1) // batch_size))
    prec = resolve_precision(model.device, precision)
    dataset = ImageItems(items, model.crop_transform, model.preprocess.resize_size)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate_items, pin_memory=model.device.type == "cuda",
                        prefetch_factor=4 if num_workers else None,
                        persistent_workers=False)
    bar = tqdm(total=len(items), desc=desc, unit="img", disable=not progress, smoothing=0.1,
               dynamic_ncols=True)
    try:
        for indices, tensor, failed in loader:
            rows = None
            if indices:
                scores = model.score_batch(tensor, prec)
                rows = build_rows(model, [items[i] for i in indices], scores)
                rows.insert(0, "_index", indices)
            bar.update(len(indices) + len(failed))
            yield rows, failed
    finally:
        bar.close()


def resolve_precision(device, precision: str = "auto"):
    from perceptions.train.runtime import Precision, choose_precision

    if precision == "auto":
        return choose_precision(device, amp=True)
    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        raise PerceptionsError(f"unknown precision {precision!r}; use auto, fp32, bf16 or fp16")
    return Precision(device.type, dtypes[precision])


def build_rows(model: PerceptionModel, items, scores: np.ndarray) -> pd.DataFrame:
    """Location fields parsed from PP2-style names, then `<study>_score` and `<study>_decile` per study."""
    from perceptions.data.placepulse import parse_image_name

    records = []
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            place = parse_image_name(os.path.basename(os.fspath(item)))
            path = os.fspath(item)
        else:
            place, path = {}, ""
        records.append({"path": path, "lat": _float(place.get("lat")), "lon": _float(place.get("lon")),
                        "location_id": place.get("location_id") or "", "city": place.get("city") or ""})
    rows = pd.DataFrame.from_records(records, columns=["path", "lat", "lon", "location_id", "city"])
    deciles = model.deciles(scores)
    for j, study in enumerate(model.studies):
        rows[f"{study}_score"] = scores[:, j]
    for j, study in enumerate(model.studies):
        rows[f"{study}_decile"] = deciles[:, j]
    return rows


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def predict_paths(model: PerceptionModel, paths, batch_size: int = 64, num_workers: int | None = None,
                  device=None, progress: bool = True, precision: str = "auto"):
    """Score images -> (DataFrame, skipped DataFrame[path, reason]), rows in input order.

    device: None keeps the model where it is; otherwise the model is moved there first.
    """
    if device is not None:
        from perceptions.train.runtime import choose_device

        model.device = choose_device(str(device)) if not isinstance(device, torch.device) else device
        model.net.to(model.device)
    parts, failures = [], []
    for rows, failed in iter_batches(model, list(paths), batch_size, num_workers, progress, precision):
        if rows is not None:
            parts.append(rows)
        failures.extend(failed)
    columns = prediction_columns(model.studies)
    df = (pd.concat(parts, ignore_index=True).sort_values("_index", kind="stable").drop(columns="_index")
          if parts else pd.DataFrame(columns=columns))
    df = df.reset_index(drop=True)[columns]
    skipped = pd.DataFrame([(_item_name(paths[i]), reason) for i, reason in sorted(failures)],
                           columns=["path", "reason"])
    return df, skipped


def _item_name(item) -> str:
    return os.fspath(item) if isinstance(item, (str, os.PathLike)) else f"<{type(item).__name__}>"


def prediction_columns(studies) -> list[str]:
    return (["path", "lat", "lon", "location_id", "city"] + [f"{s}_score" for s in studies]
            + [f"{s}_decile" for s in studies])
