"""Benchmark 8: large images. Scoring 4000x3000 JPEGs against the same photos saved at 400x300.

Case: `perceptions.predict.pipeline.predict_paths` with the shipped model (model/, its defaults: batch 64, the
default decoding workers) on a folder of 4000x3000 JPEGs. Reference: the same call on the same photos saved at
400x300 (Place Pulse's size). Both decode through `open_rgb(min_side=Preprocess.decode_side)`, which asks
libjpeg for its reduced-scale (DCT-scaled) decode: a 4000x3000 file comes out at 1/8 scale (500x375), never at
full resolution, but its entropy-coded data is still read in full, so the cost grows with the file's bytes.
Ratio = cost per image of the large folder / the small one (target <= 2.5). Also timed, as figures: the large
folder with one decoding worker (decoding overlaps the net, which then has a core less), and decoding alone,
reduced as predict does it and at full resolution (what the reduced decode saves).

The same pair of folders is also scored by the same net at 224 px (an ImageNet-resolution package: the shipped
weights with input_size 224, which costs what any 224 px EfficientNet-Lite0 package costs). The shipped model's
128 px net is so cheap that reading a large file's entropy-coded data, which no reduced decode skips, dominates:
`decode_floor` is that reading alone spread over every core, divided by a small photo's whole cost, the ratio
below which no loader can go on this machine.

The photos: the bench city's street scenes upscaled to 4000x3000 with fine grain added (Gaussian, sd GRAIN_SD),
so that each file is about as big as a 12 MP phone camera's JPEG (~3 MB, ~2 bits per pixel at quality 90); a
smooth upscale would compress to a sixth of that and flatter the ratio. The small folder is each large photo
resized (Lanczos) to 400x300 and saved at the same quality.

    .venv/bin/python -m benchmarks.bench_large_images [--quick]
"""
from __future__ import annotations

import json
import os

from benchmarks.common import (WORK, alternate, bench_city, city_images, median, paired_ratio, rate, run_as_script,
                               verdict)

TARGET = 2.5          # at most this many times the cost per image of the 400x300 folder
LARGE, SMALL = (4000, 3000), (400, 300)
GRAIN_SD = 8.0        # grey levels of added grain: ~3 MB per 4000x3000 file at QUALITY
QUALITY = 90


def make_photos(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(large paths, small paths): n photos at 4000x3000 and the same n at 400x300, made once and reused."""
    import numpy as np
    from PIL import Image

    folder = WORK / "large_images"
    params = {"n": n, "seed": seed, "large": LARGE, "small": SMALL, "grain_sd": GRAIN_SD, "quality": QUALITY}
    marker = folder / "params.json"
    large = [folder / "large" / f"photo_{i:03d}.jpg" for i in range(n)]
    small = [folder / "small" / f"photo_{i:03d}.jpg" for i in range(n)]
    if marker.is_file() and json.loads(marker.read_text()) == json.loads(json.dumps(params)) and \
            all(p.is_file() for p in large + small):
        return [str(p) for p in large], [str(p) for p in small]
    marker.unlink(missing_ok=True)
    (folder / "large").mkdir(parents=True, exist_ok=True)
    (folder / "small").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    scenes = city_images(bench_city())
    for i, (big_path, small_path) in enumerate(zip(large, small)):
        scene = Image.open(scenes[i % len(scenes)]).convert("RGB").resize(LARGE, Image.Resampling.BICUBIC)
        pixels = np.asarray(scene, dtype=np.float32)
        pixels += rng.normal(0.0, GRAIN_SD, pixels.shape).astype(np.float32)
        photo = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
        photo.save(big_path, quality=QUALITY)
        photo.resize(SMALL, Image.Resampling.LANCZOS).save(small_path, quality=QUALITY)
    marker.write_text(json.dumps(params))
    return [str(p) for p in large], [str(p) for p in small]


def decode(paths, min_side):
    from perceptions.data.images import open_rgb

    def go():
        for p in paths:
            open_rgb(p, min_side=min_side)
    return go


def run(quick: bool = False, n_images: int | None = None, repeats: int | None = None) -> dict:
    from perceptions.predict.model import load_model
    from perceptions.predict.pipeline import predict_paths

    n = n_images or (4 if quick else 24)
    repeats = repeats or (1 if quick else 5)
    large, small = make_photos(n)
    import torch

    from perceptions.predict.model import PerceptionModel

    model = load_model(device="cpu")  # the shipped model
    model_224 = PerceptionModel(net=model.net, meta={**model.meta, "preprocess": {
        **model.meta["preprocess"], "input_size": 224}}, device=model.device, path=model.path)
    side = model.preprocess.decode_side
    counts = {}

    def score(name, paths, workers=None, net=model):
        def go():
            df, skipped = predict_paths(net, paths, num_workers=workers, progress=False)
            counts[name] = (len(df), len(skipped))
        return go

    cases = {"large": score("large", large), "small": score("small", small),
             "large_one_worker": score("large_one_worker", large, workers=1),
             "large_224": score("large_224", large, net=model_224),
             "small_224": score("small_224", small, net=model_224),
             "decode_large_reduced": decode(large, side), "decode_small": decode(small, side),
             "decode_large_full": decode(large, None)}  # min_side None: only >4096 px sides are reduced
    times = alternate(cases, repeats=repeats, warmup=1)
    ratio = paired_ratio(times["small"], n, times["large"], n)  # small's images/s over large's: cost ratio
    one_worker = paired_ratio(times["small"], n, times["large_one_worker"], n)
    ratio_224 = paired_ratio(times["small_224"], n, times["large_224"], n)
    ms = {name: round(1000 * median(t) / n, 2) for name, t in times.items()}
    threads = torch.get_num_threads()
    floor = round(ms["decode_large_reduced"] / threads / ms["small"], 2)
    mb = {name: round(sum(os.path.getsize(p) for p in paths) / len(paths) / 2**20, 2)
          for name, paths in (("large", large), ("small", small))}
    return {
        "title": "Large images: scoring 4000x3000 JPEGs vs the same photos at 400x300",
        "inputs": {"model": str(model.path), "backbone": model.meta.get("backbone"),
                   "image_size": model.preprocess.input_size, "decode_side": side, "photos": n,
                   "large": f"{LARGE[0]}x{LARGE[1]} JPEG q{QUALITY}, {mb['large']} MB each "
                            f"({8 * mb['large'] * 2**20 / (LARGE[0] * LARGE[1]):.2f} bits/pixel)",
                   "small": f"{SMALL[0]}x{SMALL[1]} JPEG q{QUALITY}, {mb['small']} MB each",
                   "photos_from": f"bench city scenes upscaled, Gaussian grain sd {GRAIN_SD}", "repeats": repeats,
                   "rows_written": counts},
        "figures": {"large": rate(times["large"], n), "small": rate(times["small"], n),
                    "large_one_worker": {**rate(times["large_one_worker"], n), "ratio": one_worker},
                    "at_224px": {"large": rate(times["large_224"], n), "small": rate(times["small_224"], n),
                                 "ratio": ratio_224, "verdict": verdict(ratio_224, TARGET, higher_is_better=False)},
                    "decode_floor": {"ratio": floor, "threads": threads,
                                     "meaning": "reading the large files alone on every core / a small photo's "
                                                "whole cost at 128 px: the least the ratio can be here"},
                    "ms_per_image": ms,
                    "decode_saving": round(median(times["decode_large_full"]) /
                                           median(times["decode_large_reduced"]), 2)},
        "ratio": ratio,
        "ratio_name": "cost per 4000x3000 image / per 400x300 image",
        "target": TARGET,
        "higher_is_better": False,
        "verdict": verdict(ratio, TARGET, higher_is_better=False),
    }


if __name__ == "__main__":
    run_as_script(run, __doc__)
