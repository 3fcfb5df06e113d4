"""The predict pipeline: image paths (or in-memory PIL images) -> batches -> rows of scores and deciles.

DataLoader workers decode and resize (`load_rgb` + the package's eval transform, as uint8 crops, stacked
straight into shared memory) while the main process normalises each batch and runs the net through the model's
`score_batch` (the one inference path, `predict.inference`). One row per readable image, in input order;
unreadable files are collected as (index, reason) and never stop a run.

`model` here is any object with the attributes of a `predict.model.PerceptionModel` (device, studies,
preprocess, crop_transform, score_batch, deciles); this module does not import `predict.model`, which
imports it (`PerceptionModel.predict` runs `predict_paths`), so the two form no import cycle.
"""
from __future__ import annotations

import functools
import os
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from perceptions.errors import PerceptionsError
from perceptions.progress import Progress
from perceptions.predict.writers import LOCATION_COLUMNS, prediction_columns
from perceptions.runtime import Precision, choose_device, choose_precision, default_workers

__all__ = ["BatchRing", "CropLoader", "ImageItems", "ThreadedItems", "build_rows", "collate_items", "collate_views",
           "iter_batches", "pil_to_rgb", "predict_paths", "prediction_columns", "resolve_precision"]


def resolve_precision(device, precision: str = "auto") -> Precision:
    """--precision -> a runtime Precision. 'auto' runs as training does by default (TrainConfig.amp_on):
    autocast on CUDA, fp32 on a CPU. The package's decile edges were fitted on scores made that way, and bf16
    on a CPU moves scores enough (up to ~0.4 on the 1..10 scale) to put one image in ten in another decile."""
    if precision == "auto":
        return choose_precision(device, amp=device.type == "cuda")
    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        raise PerceptionsError(f"unknown precision {precision!r}; use auto, fp32, bf16 or fp16")
    return Precision(device.type, dtypes[precision])


# ------------------------------------------------------------------------------------------- decoding

class ImageItems(Dataset):
    """Paths (or in-memory PIL images) -> (index, tensor or None, reason). Never raises for a bad file.

    views: an optional hook (`iter_batches`) that cuts one file into several views; for a file it cuts the
    item is (index, [(view key, tensor or None, reason), ...], "") and `collate_views` flattens it."""

    def __init__(self, items, transform, min_side: int, views=None, view_transform=None, view_side: int = 0):
        self.items, self.transform, self.min_side = items, transform, min_side
        self.views, self.view_transform, self.view_side = views, view_transform, view_side

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        from perceptions.data.images import load_rgb

        item = self.items[i]
        try:
            if isinstance(item, (str, os.PathLike)):
                cut = self.views.cut(item, self.view_side) if self.views is not None else None
                if cut is not None:
                    return i, [(key, None if view is None else self.view_transform(view), why)
                               for key, view, why in cut], ""
                image = load_rgb(item, min_side=self.min_side)
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


def collate_items(samples, stack=None):
    """Stack the readable images of a batch (with `stack`, default `_stack`); keep the failures aside."""
    ok = [(i, t) for i, t, _ in samples if t is not None]
    failed = [(i, reason) for i, t, reason in samples if t is None]
    return [i for i, _ in ok], (stack or _stack)([t for _, t in ok]), failed


def collate_views(samples, stack=None):
    """As collate_items, for a dataset with a views hook: -> (indices, tensor, failures [(index, reason, view
    key or None)], view keys (None for a whole image)), one entry per view."""
    ok, failed, keys = [], [], []
    for i, t, reason in samples:
        for key, tensor, why in (t if isinstance(t, list) else [(None, t, reason)]):
            if tensor is None:
                failed.append((i, why, key))
            else:
                ok.append((i, tensor))
                keys.append(key)
    return [i for i, _ in ok], (stack or _stack)([t for _, t in ok]), failed, keys


def _stack(tensors, out=None):
    """(3, S, S) crops -> a (B, 3, S, S) batch in channels_last memory (NHWC), the layout the net runs in: the
    copy happens here, in the decoding worker, not in the main process that runs the net. In a worker the batch
    is stacked straight into shared memory (as torch's default_collate does), which the queue to the main
    process would otherwise copy it into. out: a (B, S, S, 3) buffer to stack into."""
    if not tensors:
        return None
    channels, height, width = tensors[0].shape
    if out is None and torch.utils.data.get_worker_info() is not None:
        storage = tensors[0]._typed_storage()._new_shared(len(tensors) * height * width * channels)
        out = tensors[0].new(storage).view(len(tensors), height, width, channels)
    return torch.stack([t.permute(1, 2, 0) for t in tensors], out=out).permute(0, 3, 1, 2)


class BatchRing:
    """uint8 batch buffers in shared memory, made before the DataLoader starts its workers, that the workers
    stack into and the main process reads: the same pages round the ring instead of a fresh shared segment per
    batch, whose page faults cost more than the stacking itself (~8 ms per batch of 64 at 224 px here). Batch b
    goes to slot b % slots, and there are more slots than batches a DataLoader can hold at once (prefetch_factor x
    workers in flight, plus the one being used): a slot is written again only after the main process has asked
    for the batch after the one it held. Only for a main process that is done with a batch when it asks for the
    next one (iter_batches normalises it first) and does not pin memory (pinning copies each batch anyway)."""

    def __init__(self, slots: int, batch_size: int, side: int):
        self.buffers = torch.empty((slots, batch_size, side, side, 3), dtype=torch.uint8).share_memory_()
        self.batch_size = batch_size

    def collate(self, collate):
        """`collate` (collate_items or collate_views) stacking into this ring in a worker."""
        return functools.partial(_ring_collate, collate, self)

    def batch(self, batch):
        """A collated batch from a worker -> the same with its RingSlot as a channels_last tensor."""
        slot = batch[1]
        if isinstance(slot, RingSlot):
            batch = (batch[0], self.buffers[slot.slot, :slot.n].permute(0, 3, 1, 2), *batch[2:])
        return batch


class RingSlot(NamedTuple):
    slot: int
    n: int


def _ring_collate(collate, ring: BatchRing, samples):
    if torch.utils.data.get_worker_info() is None:
        return collate(samples)
    slots, _, side = ring.buffers.shape[:3]
    slot = samples[0][0] // ring.batch_size % slots  # items come in order: the batch number

    def stack(tensors):
        if not tensors:
            return None
        if len(tensors) > ring.batch_size or any(t.shape != (3, side, side) for t in tensors):
            return _stack(tensors)  # more views than a slot holds, or another size: a fresh buffer
        _stack(tensors, out=ring.buffers[slot, :len(tensors)])
        return RingSlot(slot, len(tensors))
    return collate(samples, stack)


class CropLoader:
    """The decoding DataLoader of predict over ImageItems: batches of (indices, channels_last uint8 crops or None,
    failures[, view keys]). With workers and no pinned memory the workers stack into a BatchRing (side: the crops'
    side). persistent: keep the workers from one pass to the next (benchmarks/bench_loading.py). Without workers
    (a CPU's default) a batch's files are decoded on `threads` threads of this process (`ThreadedItems`); with
    pinned memory (a GPU) the DataLoader pins the batches as before."""

    def __init__(self, dataset, batch_size: int, num_workers: int, side: int, collate=collate_items,
                 pin_memory: bool = False, persistent: bool = False, prefetch_factor: int = 4,
                 threads: int | None = None):
        self.ring = BatchRing(prefetch_factor * num_workers + 2, batch_size, side) \
            if num_workers and not pin_memory else None
        if not num_workers and not pin_memory and (threads or torch.get_num_threads()) > 1:
            self.loader = ThreadedItems(dataset, batch_size, collate, threads or torch.get_num_threads())
            return
        self.loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                 collate_fn=self.ring.collate(collate) if self.ring else collate,
                                 pin_memory=pin_memory, prefetch_factor=prefetch_factor if num_workers else None,
                                 persistent_workers=persistent and num_workers > 0)

    def __iter__(self):
        return iter(self.loader) if self.ring is None else map(self.ring.batch, self.loader)


class ThreadedItems:
    """In-process batches whose files are decoded on several threads at once, then collated: between two calls of
    the net, which uses every core, decoding would otherwise run on one. libjpeg-turbo (through PIL or
    torchvision) and torch's resize kernels release the GIL, so the threads run in parallel; this matters most
    for large photos, whose entropy-coded data costs a 4000x3000 JPEG ~25 ms even at reduced scale
    (benchmarks/bench_large_images.py). Batches come in order, as from a DataLoader without workers."""

    def __init__(self, dataset, batch_size: int, collate, threads: int):
        self.dataset, self.batch_size, self.collate, self.threads = dataset, batch_size, collate, threads

    def __len__(self):
        return (len(self.dataset) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.threads, thread_name_prefix="decode") as pool:
            for start in range(0, len(self.dataset), self.batch_size):
                stop = min(start + self.batch_size, len(self.dataset))
                yield self.collate(list(pool.map(self.dataset.__getitem__, range(start, stop))))


# -------------------------------------------------------------------------------------------- scoring

def iter_batches(model, items, batch_size=64, num_workers=None, progress=None, precision="auto",
                 desc="predict", views=None):
    """Yield (rows DataFrame or None, failures list[(item index, reason)]) per batch, in input order.

    Rows carry an `_index` column (position in `items`) so callers can restore input order.
    num_workers None: `runtime.default_workers` (none on a CPU: the net's threads already use every core and a
    decoding worker would take one from them; see benchmarks/bench_predict.py and benchmarks/RESULTS.md).
    progress: a bar on a terminal, plain lines in a log (None), or forced on/off (perceptions.progress).
    views: None, or a hook that cuts some files into several views (`perceptions.places.panoramas.PanoramaViews`):
    `cut(path, side)` -> None (an ordinary image) or [(key, PIL view or None, reason)], each view `side` =
    resize_size px square and run through the eval transform without the bottom crop; `rows(model, rows, keys)`
    completes a batch's rows. Failures are then (index, reason, view key or None)."""
    if batch_size < 1:
        raise PerceptionsError(f"--batch-size must be at least 1, got {batch_size}")
    num_workers = default_workers(model.device) if num_workers is None else int(num_workers)
    num_workers = min(num_workers, max(0, (len(items) + batch_size - 1) // batch_size))
    prec = resolve_precision(model.device, precision)
    if views is None:
        dataset, collate = ImageItems(items, model.crop_transform, model.preprocess.decode_side), collate_items
    else:
        from dataclasses import replace

        from perceptions.data.images import eval_transform

        view_transform = eval_transform(replace(model.preprocess, crop_bottom=0), normalize=False)
        dataset = ImageItems(items, model.crop_transform, model.preprocess.decode_side, views, view_transform,
                             model.preprocess.resize_size)
        collate = collate_views
    loader = CropLoader(dataset, batch_size, num_workers, model.preprocess.input_size, collate,
                        pin_memory=model.device.type == "cuda")
    bar = Progress(len(items), desc, unit="img", enabled=progress)
    try:
        for batch in loader:
            indices, tensor, failed = batch[:3]
            rows = None
            if indices:
                scores = model.score_batch(tensor, prec)
                rows = build_rows(model, [items[i] for i in indices], scores)
                rows.insert(0, "_index", indices)
                if views is not None:
                    rows = views.rows(model, rows, batch[3])
            bar.update(len(set(indices)) + len({f[0] for f in failed} - set(indices)))
            yield rows, failed
    finally:
        bar.close()


def build_rows(model, items, scores: np.ndarray) -> pd.DataFrame:
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
    rows = pd.DataFrame.from_records(records, columns=list(LOCATION_COLUMNS))
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


def predict_paths(model, paths, batch_size: int = 64, num_workers: int | None = None, device=None,
                  progress: bool | None = None, precision: str = "auto"):
    """Score images -> (DataFrame, skipped DataFrame[path, reason]), rows in input order.

    device: None keeps the model where it is; otherwise the model is moved there first.
    """
    if device is not None:
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
