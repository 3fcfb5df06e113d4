"""Benchmark 3: image loading, ours against the original project's approach, same JPEGs, same output.

Ours: the predict pipeline's loader as `perceptions predict` builds it (`perceptions.predict.pipeline.ImageItems`
with the backbone's eval transform): the worker decodes each JPEG straight into a uint8 tensor (`load_rgb`:
torchvision's libjpeg-turbo, the pixels PIL gives), resizes and centre-crops it on uint8, and stacks the crops
into a channels_last uint8 batch in shared memory (a ring of buffers reused from batch to batch:
`predict.pipeline.BatchRing`); the main process normalises each batch to float32 in one vectorised op, as
`PerceptionModel.score_batch` does (on the GPU when there is one). DataLoader with one worker, as the original,
prefetch 4.
Original (Recode Perceptions): PIL image -> numpy float64 -> tensor -> Resize(256) on the float tensor ->
CenterCrop(224) -> Normalize, in a DataLoader with one worker; float32 batches cross to the main process.
Both produce (B, 3, 224, 224) float32 batches from the same 400x300 JPEGs; alternated, median quoted. The main
process runs one torch thread in both (the worker is on the other core: with two cores, a two-thread main
process would take turns with its own worker). The images are every file read `passes` (4) times, so the ends
of a pass (the first batch, before the main process has work; the last, after the worker is done) weigh little;
both loaders keep their worker from pass to pass (persistent_workers), so its start-up (forking a process that
holds torch) counts once, as in a long run; the `*_fresh_worker` cases start one every pass, as `predict` does.
The CPU time a fresh worker uses per image (`worker_cpu_ms_per_image`, start-up included) is counted too: unlike
wall time it hardly moves when other processes share the machine.
Also per core: both in the main process (workers=0, one torch thread), and JPEG decoding alone: `load_rgb`, as
ours decodes (`decode_only`: original per image / decode per image bounds any per-core speedup), and PIL's
decoding as `open_rgb` does it (`decode_only_pil`), the original's decoder.
Target: >= 4x (issue 17).

    .venv/bin/python -m benchmarks.bench_loading [--quick]
"""
from __future__ import annotations

import gc
import os
import resource

from benchmarks.common import (alternate, bench_city, city_images, median, paired_ratio, rate, run_as_script,
                               verdict)

TARGET = 4.0
BATCH_SIZE = 64  # predict's default
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class OriginalStyle:
    """The original project's per-image loading (a map-style dataset)."""

    def __init__(self, paths, resize: int = 256, crop: int = 224):
        from torchvision import transforms

        self.paths = list(paths)
        self.transform = transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(crop),
                                             transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        import numpy as np
        import torch
        from PIL import Image

        image = Image.open(self.paths[i]).convert("RGB")
        pixels = np.asarray(image, dtype=np.float64) / 255.0          # numpy float64 (H, W, 3)
        tensor = torch.from_numpy(pixels).permute(2, 0, 1)            # float64 tensor (3, H, W)
        return self.transform(tensor).float()                         # resized on floats; float32 for the net


def ours_loader(paths, workers: int, persistent: bool = False):
    """The loader `perceptions.predict.pipeline.iter_batches` builds, minus the net (persistent: its worker kept
    from one pass to the next, as in a long run)."""
    from perceptions.data.images import NormalizeUint8, eval_transform
    from perceptions.nets.backbones import create_backbone
    from perceptions.predict.pipeline import CropLoader, ImageItems

    _, pre, _ = create_backbone("efficientnet_lite0", weights="none")
    dataset = ImageItems(list(paths), eval_transform(pre, normalize=False), pre.decode_side)
    loader = CropLoader(dataset, BATCH_SIZE, workers, pre.input_size, persistent=persistent)
    return NormalizedBatches(loader, NormalizeUint8(pre.mean, pre.std)), pre


class NormalizedBatches:
    """predict's batches as the net gets them: uint8 crops normalised batch by batch in the main process, as
    `PerceptionModel.score_batch` does."""

    def __init__(self, loader, normalize):
        self.loader, self.normalize = loader, normalize

    def __iter__(self):
        return (self.normalize(tensor) for _, tensor, _ in self.loader)


def original_loader(paths, workers: int, persistent: bool = False):
    from torch.utils.data import DataLoader

    return DataLoader(OriginalStyle(paths), batch_size=BATCH_SIZE, shuffle=False, num_workers=workers,
                      persistent_workers=persistent and workers > 0)


def drain(loader, shapes: list | None = None, threads: int | None = None):
    """A callable iterating `loader` once; threads: torch threads meanwhile (DataLoader workers use 1 each, so
    the in-process cases get 1 too: a per-core comparison)."""
    import torch

    def go():
        saved = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            for batch in loader:
                tensor = batch[1] if isinstance(batch, (list, tuple)) else batch
                if shapes is not None and not shapes:
                    shapes.append((tuple(tensor.shape), str(tensor.dtype)))
        finally:
            torch.set_num_threads(saved)
    return go


def decode_only(paths, min_side: int, pil: bool = False):
    from perceptions.data.images import load_rgb, open_rgb

    decode = open_rgb if pil else load_rgb

    def go():
        for p in paths:
            decode(p, min_side=min_side)
    return go


def resize_only(paths, pre):
    """The eval transform alone (resize and centre crop on uint8) on images decoded beforehand."""
    from perceptions.data.images import eval_transform, load_rgb

    transform = eval_transform(pre, normalize=False)
    decoded = [load_rgb(p, min_side=pre.decode_side) for p in dict.fromkeys(paths)]
    decoded = [decoded[i % len(decoded)] for i in range(len(paths))]

    def go():
        for image in decoded:
            transform(image)
    return go


def stack_only(paths, pre):
    """Stacking crops made beforehand into channels_last uint8 batches, as the worker does into its ring."""
    import torch

    from perceptions.data.images import eval_transform, load_rgb
    from perceptions.predict.pipeline import _stack

    transform = eval_transform(pre, normalize=False)
    crops = [transform(load_rgb(p, min_side=pre.decode_side)) for p in dict.fromkeys(paths)]
    crops = [crops[i % len(crops)] for i in range(len(paths))]
    out = torch.empty((BATCH_SIZE, pre.input_size, pre.input_size, 3), dtype=torch.uint8)

    def go():
        for start in range(0, len(crops), BATCH_SIZE):
            chunk = crops[start:start + BATCH_SIZE]
            _stack(chunk, out=out[:len(chunk)])
    return go


def with_worker_cpu(go, seconds: list):
    """`go` (a pass of a loader whose worker ends with the pass), appending the CPU seconds that worker used
    (start-up included): the loader's cost per image whatever else the machine runs, unlike its wall time."""
    def timed():
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        go()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        seconds.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return timed


def run(quick: bool = False, n_images: int | None = None, repeats: int | None = None, passes: int = 4) -> dict:
    from perceptions.runtime import keep_freed_memory

    keep_freed_memory()  # as `load_model` does in predict's process: batches reuse freed heap memory (section 2)
    n_images = n_images or (64 if quick else 256)
    repeats = repeats or (1 if quick else 3)
    city = bench_city()
    files = city_images(city, n_images)
    paths = files * passes
    workers = 1  # the original's: the same resources on both sides
    ours_shape, original_shape = [], []
    ours, pre = ours_loader(paths, workers, persistent=True)
    worker_cpu = {"ours": [], "original": []}
    cases = {"ours": drain(ours, ours_shape, threads=1),
             "original": drain(original_loader(paths, workers, persistent=True), original_shape, threads=1),
             "ours_fresh_worker": with_worker_cpu(drain(ours_loader(paths, workers)[0], threads=1),
                                                  worker_cpu["ours"]),
             "original_fresh_worker": with_worker_cpu(drain(original_loader(paths, workers), threads=1),
                                                      worker_cpu["original"]),
             "ours_in_process": drain(ours_loader(paths, 0)[0], threads=1),
             "original_in_process": drain(original_loader(paths, 0), threads=1),
             "decode_only": decode_only(paths, pre.decode_side),
             "decode_only_pil": decode_only(paths, pre.decode_side, pil=True),
             "resize_only": resize_only(paths, pre), "stack_only": stack_only(paths, pre)}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cores > workers:
        cases["ours_all_cores"] = drain(ours_loader(paths, cores, persistent=True)[0])
    times = alternate(cases, repeats=repeats, warmup=1)
    del cases, ours  # the persistent workers end with their loaders
    gc.collect()
    n = len(paths)
    speedup = paired_ratio(times["ours"], n, times["original"], n)
    per_core = paired_ratio(times["ours_in_process"], n, times["original_in_process"], n)
    decode_bound = paired_ratio(times["decode_only"], n, times["original_in_process"], n)
    cpu = {name: [s / n for s in seconds[1:]] for name, seconds in worker_cpu.items()}  # the warm-up round left out
    return {
        "title": "Data loading: ours vs the original approach (same JPEGs, same output size)",
        "inputs": {"images": n, "files": len(files), "passes": passes, "jpeg": "400x300 synthetic street scenes",
                   "batch_size": BATCH_SIZE,
                   "ours": f"ImageItems: load_rgb (JPEG -> uint8 tensor) + eval_transform on uint8 "
                           f"({pre.interpolation}, resize {pre.resize_size}, crop {pre.input_size}), uint8 batches "
                           f"in shared memory, normalised per batch in the main process; DataLoader "
                           f"workers={workers}",
                   "original": "PIL -> numpy float64 -> tensor -> Resize(256, bilinear, antialias) on float64 -> "
                               "CenterCrop(224) -> Normalize, DataLoader workers=1",
                   "workers_kept": "ours and original: the worker persists between passes (start-up once, as in a "
                                   "long run); the *_fresh_worker cases start a new one every pass, as each "
                                   "`predict` run does",
                   "output": {"ours": ours_shape[0] if ours_shape else None,
                              "original": original_shape[0] if original_shape else None},
                   "repeats": repeats},
        "figures": {"ours": rate(times["ours"], n), "original": rate(times["original"], n),
                    "ours_in_process": rate(times["ours_in_process"], n),
                    "original_in_process": rate(times["original_in_process"], n),
                    "decode_only": {**rate(times["decode_only"], n), "decoder": "load_rgb (torchvision JPEG)"},
                    "decode_only_pil": {**rate(times["decode_only_pil"], n), "decoder": "open_rgb (PIL)"},
                    **({"ours_all_cores": {**rate(times["ours_all_cores"], n), "workers": cores,
                                           "speedup": paired_ratio(times["ours_all_cores"], n,
                                                                   times["original"], n)}}
                       if "ours_all_cores" in times else {}),
                    "ours_fresh_worker": rate(times["ours_fresh_worker"], n),
                    "original_fresh_worker": rate(times["original_fresh_worker"], n),
                    "speedup_fresh_worker": paired_ratio(times["ours_fresh_worker"], n,
                                                         times["original_fresh_worker"], n),
                    "worker_cpu_ms_per_image": {name: round(1e3 * median(v), 4) for name, v in cpu.items()},
                    "speedup_worker_cpu": round(median([o / u for u, o in zip(cpu["ours"], cpu["original"])]), 3),
                    "speedup_per_core": per_core,
                    "per_core_bound_by_decoding": decode_bound,
                    "worker_bound_by_decoding": paired_ratio(times["decode_only"], n, times["original"], n),
                    "share_of_decoding_limit": paired_ratio(times["ours"], n, times["decode_only"], n),
                    # Where a worker's time goes, ms per image on one thread: what 4x would leave for each step.
                    "ms_per_image": {name: round(1e3 * median(times[name]) / n, 3) for name in
                                     ("ours", "original", "decode_only", "resize_only", "stack_only")}},
        "ratio": speedup,
        "ratio_name": f"speedup (ours with {workers} worker(s) / original with 1 worker, workers kept between passes)",
        "target": TARGET,
        "verdict": verdict(speedup, TARGET),
    }


if __name__ == "__main__":
    run_as_script(run, __doc__)
