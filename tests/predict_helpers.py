"""Shared by the predict / explain tests: a tiny model package and street-like test pictures."""
from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from perceptions.studies import STUDY_NAMES

INPUT_SIZE = 64
PP2_NAME = "{lat:.6f}_{lon:.6f}_{loc}_{city}.JPG"


def build_tiny_package(folder, seed: int = 0, studies=STUDY_NAMES):
    """An untrained efficientnet_lite0 at 64 px whose head is spread out (std 0.02) so that scores, deciles and
    Grad-CAM maps vary from image to image, saved with save_package; deciles fitted on made-up raw scores."""
    import torch

    from perceptions.data.images import Preprocess
    from perceptions.data.labels import Scaling
    from perceptions.nets.package import save_package
    from perceptions.nets.perception_net import build_net

    torch.manual_seed(seed)
    net, _ = build_net("efficientnet_lite0", studies, weights="none")
    with torch.no_grad():
        net.head.linear.weight.normal_(0.0, 0.05)
    rng = np.random.default_rng(seed)
    raw = pd.DataFrame({s: rng.normal(25, 3, 200) for s in studies})
    scaling = Scaling.fit(raw, list(studies))
    # Deciles of this toy model: edges spread over 1..10 so that its near-constant scores still vary in decile.
    pre = Preprocess(input_size=INPUT_SIZE, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                     interpolation="bilinear", crop_pct=0.875)
    return save_package(folder, net, pre, scaling.to_dict(), meta={"training": {"data": "none (test model)"}})


def street_picture(seed: int, size=(80, 60)) -> Image.Image:
    """A random but structured picture: sky, a road and a few blocks, so images differ in content."""
    rng = np.random.default_rng(seed)
    w, h = size
    pixels = np.zeros((h, w, 3), dtype=np.uint8)
    pixels[: h // 3] = rng.integers(120, 255, 3)
    pixels[h // 3:] = rng.integers(0, 140, 3)
    for _ in range(4):
        x, y = rng.integers(0, w - 8), rng.integers(0, h - 8)
        pixels[y:y + rng.integers(4, h // 2), x:x + rng.integers(4, w // 3)] = rng.integers(0, 255, 3)
    pixels = np.clip(pixels + rng.normal(0, 8, pixels.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def write_pictures(folder, n: int, pp2_names: bool = True, start: int = 0, size=(80, 60)) -> list[str]:
    """n JPEGs in `folder`; PP2-style names with coordinates in two cities when pp2_names."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        if pp2_names:
            city, lat, lon = ("Boston", 42.3 + i / 1000, -71.1) if i % 2 else ("Paris", 48.8 + i / 1000, 2.35)
            name = PP2_NAME.format(lat=lat, lon=lon, loc=f"{i:024x}", city=city)
        else:
            name = f"photo_{i:04d}.jpg"
        path = folder / name
        street_picture(i, size).save(path, quality=90)
        paths.append(str(path))
    return paths


def distributed_predict(rank, world, store, inputs, out, package, resume=False, die_at_batch=None):
    """One rank of a gloo predict job, started by torch.multiprocessing.spawn. The group meets through a file
    (`store`, a fresh path per job) rather than a TCP port, so parallel test runs cannot collide on a port.
    die_at_batch: the process ends abruptly (os._exit, like a kill) when it reaches that batch."""
    import os

    import torch
    import torch.distributed as dist

    from perceptions.predict.job import predict_to_file
    from perceptions.predict.model import PerceptionModel

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    if die_at_batch is not None:
        real, calls = PerceptionModel.score_batch, []

        def score_or_die(self, batch, precision):
            calls.append(1)
            if len(calls) == die_at_batch:
                os._exit(1)
            return real(self, batch, precision)

        PerceptionModel.score_batch = score_or_die
    try:
        predict_to_file(inputs, out, model=package, batch_size=4, device="cpu", num_workers=0,
                        precision="fp32", progress=False, resume=resume)
    finally:
        dist.destroy_process_group()
