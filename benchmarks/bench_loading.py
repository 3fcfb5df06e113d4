"""Benchmark 3: image loading, ours against the original project's approach, same JPEGs, same output.

Ours: the predict pipeline's loader as `perceptions predict` builds it (`perceptions.predict.pipeline.ImageItems`
with the backbone's eval transform: JPEG draft decoding, resize and centre crop on uint8 tensors, normalisation
to float32 at 224 px; DataLoader with one worker, as the original, prefetch 4).
Original (Recode Perceptions): PIL image -> numpy float64 -> tensor -> Resize(256) on the float tensor ->
CenterCrop(224) -> Normalize, in a DataLoader with one worker.
Both produce (B, 3, 224, 224) float32 batches from the same 400x300 JPEGs; alternated, median quoted. Each
pass reads every file `passes` times, so the workers' start-up weighs as little as in a long run.
Also per core: both in the main process (workers=0, one torch thread), and JPEG decoding alone (`open_rgb`),
which both pipelines must do: original per image / decode per image bounds any per-core speedup.
Target: >= 5x.

    .venv/bin/python -m benchmarks.bench_loading [--quick]
"""
from __future__ import annotations

import os

from benchmarks.common import alternate, bench_city, city_images, paired_ratio, rate, run_as_script, verdict

TARGET = 5.0
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


def ours_loader(paths, workers: int):
    """The loader `perceptions.predict.pipeline.iter_batches` builds, minus the net."""
    from torch.utils.data import DataLoader

    from perceptions.data.images import NormalizeUint8, eval_transform
    from perceptions.nets.backbones import create_backbone
    from perceptions.predict.pipeline import ImageItems, collate_items

    _, pre, _ = create_backbone("efficientnet_lite0", weights="none")
    dataset = ImageItems(list(paths), eval_transform(pre, normalize=False), pre.resize_size)
    loader = DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=False, num_workers=workers, collate_fn=collate_items,
                        prefetch_factor=4 if workers else None, persistent_workers=False)
    return NormalizedBatches(loader, NormalizeUint8(pre.mean, pre.std)), pre


class NormalizedBatches:
    """predict's batches as the net gets them: uint8 crops normalised batch by batch in the main process, as
    `PerceptionModel.score_batch` does."""

    def __init__(self, loader, normalize):
        self.loader, self.normalize = loader, normalize

    def __iter__(self):
        return (self.normalize(tensor) for _, tensor, _ in self.loader)


def original_loader(paths, workers: int):
    from torch.utils.data import DataLoader

    return DataLoader(OriginalStyle(paths), batch_size=BATCH_SIZE, shuffle=False, num_workers=workers)


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


def decode_only(paths, min_side: int):
    from perceptions.data.images import open_rgb

    def go():
        for p in paths:
            open_rgb(p, min_side=min_side)
    return go


def run(quick: bool = False, n_images: int | None = None, repeats: int | None = None, passes: int = 2) -> dict:
    n_images = n_images or (64 if quick else 256)
    repeats = repeats or (1 if quick else 3)
    city = bench_city()
    files = city_images(city, n_images)
    paths = files * passes
    workers = 1  # the original's: the same resources on both sides
    ours_shape, original_shape = [], []
    ours, pre = ours_loader(paths, workers)
    cases = {"ours": drain(ours, ours_shape), "original": drain(original_loader(paths, 1), original_shape),
             "ours_in_process": drain(ours_loader(paths, 0)[0], threads=1),
             "original_in_process": drain(original_loader(paths, 0), threads=1),
             "decode_only": decode_only(paths, pre.resize_size)}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cores > workers:
        cases["ours_all_cores"] = drain(ours_loader(paths, cores)[0])
    times = alternate(cases, repeats=repeats, warmup=1)
    n = len(paths)
    speedup = paired_ratio(times["ours"], n, times["original"], n)
    per_core = paired_ratio(times["ours_in_process"], n, times["original_in_process"], n)
    decode_bound = paired_ratio(times["decode_only"], n, times["original_in_process"], n)
    return {
        "title": "Data loading: ours vs the original approach (same JPEGs, same output size)",
        "inputs": {"images": n, "files": len(files), "passes": passes, "jpeg": "400x300 synthetic street scenes", "batch_size": BATCH_SIZE,
                   "ours": f"ImageItems + eval_transform ({pre.interpolation}, resize {pre.resize_size}, crop "
                           f"{pre.input_size}), DataLoader workers={workers}",
                   "original": "PIL -> numpy float64 -> tensor -> Resize(256, bilinear, antialias) on float64 -> "
                               "CenterCrop(224) -> Normalize, DataLoader workers=1",
                   "output": {"ours": ours_shape[0] if ours_shape else None,
                              "original": original_shape[0] if original_shape else None},
                   "repeats": repeats},
        "figures": {"ours": rate(times["ours"], n), "original": rate(times["original"], n),
                    "ours_in_process": rate(times["ours_in_process"], n),
                    "original_in_process": rate(times["original_in_process"], n),
                    "decode_only": rate(times["decode_only"], n),
                    **({"ours_all_cores": {**rate(times["ours_all_cores"], n), "workers": cores,
                                           "speedup": paired_ratio(times["ours_all_cores"], n,
                                                                   times["original"], n)}}
                       if "ours_all_cores" in times else {}),
                    "speedup_per_core": per_core,
                    "per_core_bound_by_decoding": decode_bound},
        "ratio": speedup,
        "ratio_name": f"speedup (ours with {workers} worker(s) / original with 1 worker)",
        "target": TARGET,
        "verdict": verdict(speedup, TARGET),
    }


if __name__ == "__main__":
    run_as_script(run, __doc__)
