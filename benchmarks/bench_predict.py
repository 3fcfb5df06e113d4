"""Benchmark 2: predict efficiency, and the inference ceiling.

Case: `perceptions.predict.pipeline.predict_paths` on a folder of 400x300 JPEGs with its defaults (batch 64, the default
number of decoding workers, bf16 where native), from paths to the table of scores and deciles.
Ceiling: the same loaded net on pre-made tensors of the same batch shapes, through the same inference path
(`perceptions.predict.inference.NetForward`: inference_mode, channels_last, the same precision context): no
decoding, no resizing, no table.
Efficiency = case / ceiling (target >= 0.90); also measured with other worker counts.

    .venv/bin/python -m benchmarks.bench_predict [--quick]
"""
from __future__ import annotations

from benchmarks.common import WORK, alternate, bench_city, city_images, paired_ratio, rate, run_as_script, verdict

TARGET = 0.90
BATCH_SIZE = 64  # predict's default


def bench_package(backbone: str = "efficientnet_lite0"):
    """A model package of `backbone` with its packaged ImageNet weights and an untrained head (speed does not
    depend on what the head learnt); scaling fitted on made-up scores."""
    import numpy as np
    import pandas as pd

    from perceptions.data.labels import Scaling
    from perceptions.nets.package import save_package
    from perceptions.nets.perception_net import build_net
    from perceptions.studies import STUDY_NAMES

    folder = WORK / f"package_{backbone}"
    if (folder / "model.json").is_file() or (folder.is_dir() and any(folder.iterdir())):
        try:
            from perceptions.predict.model import load_model

            load_model(folder)
            return folder
        except Exception:  # noqa: BLE001 - a stale package from an older format: rebuild it
            pass
    net, preprocess = build_net(backbone, STUDY_NAMES, weights="packaged")
    rng = np.random.default_rng(0)
    scaling = Scaling.fit(pd.DataFrame({s: rng.normal(25, 3, 500) for s in STUDY_NAMES}), list(STUDY_NAMES))
    save_package(folder, net, preprocess, scaling.to_dict(), meta={"training": {"data": "none (benchmark model)"}},
                 overwrite=True)
    return folder


def bare_inference(model, batch_sizes: list[int], seed: int = 0):
    import torch

    from perceptions.predict.inference import NetForward
    from perceptions.predict.pipeline import resolve_precision

    precision = resolve_precision(model.device, "auto")
    forward = NetForward(model.net, precision)
    g = torch.Generator().manual_seed(seed)
    size = model.preprocess.input_size
    batches = [torch.randn(b, 3, size, size, generator=g) for b in batch_sizes]

    @torch.inference_mode()
    def infer():
        for x in batches:
            forward(x.to(model.device)).cpu()
    return infer, precision.name


def run(quick: bool = False, n_images: int | None = None, repeats: int | None = None,
        workers: tuple[int, ...] | None = None) -> dict:
    import torch

    from perceptions.predict.model import load_model
    from perceptions.predict.pipeline import predict_paths
    from perceptions.runtime import default_workers

    n_images = n_images or (64 if quick else 192)
    repeats = repeats or (1 if quick else 3)
    default = default_workers(torch.device("cpu"))
    workers = workers if workers is not None else ((default,) if quick else tuple(dict.fromkeys((default, 0, 1))))
    city = bench_city()
    paths = city_images(city, n_images)
    model = load_model(bench_package(), device="cpu")
    sizes = [min(BATCH_SIZE, n_images - i) for i in range(0, n_images, BATCH_SIZE)]
    infer, precision = bare_inference(model, sizes)
    rows = []

    def predict_with(w):
        def go():
            df, skipped = predict_paths(model, paths, batch_size=BATCH_SIZE, num_workers=w, progress=False)
            rows.append((len(df), len(skipped)))
        return go

    cases = {"bare": infer, **{f"predict workers={w}": predict_with(w) for w in workers}}
    infer()  # warm-up: oneDNN builds its kernels for each batch shape once (the JPEGs are in the page cache)
    times = alternate(cases, repeats=repeats, warmup=0)
    n = len(paths)
    figures = {"bare_inference": rate(times["bare"], n)}
    ratios = {}
    for w in workers:
        key = f"predict workers={w}"
        ratios[w] = paired_ratio(times[key], n, times["bare"], n)
        figures[key] = {**rate(times[key], n), "efficiency": ratios[w]}
    headline = ratios[default]
    best_w = max(ratios, key=ratios.get)
    return {
        "title": "Predict efficiency (predict_paths on JPEGs / bare inference on tensors)",
        "inputs": {"backbone": model.meta["backbone"], "image_size": model.preprocess.input_size,
                   "batch_size": BATCH_SIZE, "precision": precision, "channels_last": True, "images": n,
                   "jpeg": "400x300 synthetic street scenes", "default_workers": default,
                   "workers_measured": list(workers), "repeats": repeats,
                   "rows_written": rows[-1][0] if rows else None},
        "figures": figures,
        "ceiling_images_per_s": figures["bare_inference"]["per_s_median"],
        "ratio": headline,
        "ratio_name": f"efficiency (workers={default}, the default)",
        "target": TARGET,
        "verdict": verdict(headline, TARGET),
        "best_workers": best_w,
        "best_ratio": ratios[best_w],
    }


if __name__ == "__main__":
    run_as_script(run, __doc__)
