"""GPU throughput: predict on JPEGs against the bare net on the same GPU, and JPEG decoding on the GPU.

The shipped model (model/) at its input size on one CUDA device; each group of cases timed in alternation:
  bare            NetForward on pre-made normalised batches on the GPU (the ceiling), as predict runs it: the
                  precision resolve_precision(device, "auto") gives (bf16 autocast) and channels_last; beside it
                  fp32, NCHW (what each choice is worth) and a 4x batch (how launch-bound a small net is)
  predict w=N     predict_paths on a folder of synthetic 400x300 JPEGs: default batch, N decoding workers,
                  pinned memory (the library pins on CUDA), the same precision
  gpu decode      a prototype of predict decoding on the GPU: files read by threads, nvJPEG batched
                  (torchvision.io.decode_jpeg(device="cuda")), resize and crop on the GPU, the same NetForward
                  and rows; its scores are compared with predict_paths' on the same files
  decode          JPEG bytes in memory -> RGB, one process: Pillow whole and at the reduced scale the library
                  decodes these files at (Image.draft), torchvision's CPU decoder, nvJPEG batched; images/s

    python -m benchmarks.bench_gpu [--out FILE] [--images N] [--repeats R] [--workers 0,4,8]
    python -m benchmarks.bench_gpu --allow-cpu      # no GPU: the same code on the CPU at tiny sizes (a smoke run)
    torchrun --standalone --nproc-per-node 1 -m benchmarks.bench_gpu in-group -- train ARGS...

`in-group` runs a perceptions command in a process group (nccl on CUDA, gloo with --device cpu) even with one
process: runtime.init_distributed forms none at WORLD_SIZE 1, so a plain 1-GPU torchrun never touches NCCL.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import WORK, alternate, bench_city, city_images, machine, paired_ratio, rate

DEFAULT_OUT = Path(__file__).resolve().parent / "gpu_results.json"
CPU_OUT = WORK / "gpu_results_cpu.json"  # a --allow-cpu run never overwrites a GPU's figures
NO_CUDA = "no CUDA device: nothing measured"
# Mean |score difference| (1..10 scale) expected between the GPU-decoding prototype and predict_paths: the library
# decodes a 400x300 JPEG at half scale (JPEG DCT scaling, Image.draft: 200x150 still covers the 128 px input) and
# nvJPEG decodes it whole, so the two resize different pixels; 0.048 (max 0.26) measured with --allow-cpu on 16
# images, where bf16 adds nothing. bf16 on a GPU adds ~0.01 (tests/test_cuda.py).
SCORE_AGREEMENT = 0.1
READ_THREADS = 4


# --------------------------------------------------------------------------------------------------- data

def jpeg_folder(n: int) -> list[str]:
    """n synthetic 400x300 street-scene JPEGs: the shared bench city's 256, copied (new location ids, so every
    name is a distinct Place Pulse-style name) as often as needed; made once under benchmarks/_work/."""
    source = city_images(bench_city())
    folder = WORK / f"gpu_jpegs_{n}"
    if folder.is_dir() and len(list(folder.iterdir())) == n:
        return sorted(str(p) for p in folder.iterdir())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i in range(n):
        original = Path(source[i % len(source)])
        lat, lon, location, city = original.stem.split("_", 3)
        location = f"{i // len(source):04x}{location[4:]}"
        shutil.copyfile(original, folder / f"{lat}_{lon}_{location}_{city}{original.suffix}")
    return sorted(str(p) for p in folder.iterdir())


def chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# ------------------------------------------------------------------------------------------------- cases

def synchronize(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def bare_cases(model, n: int, batch_size: int) -> tuple[dict, dict]:
    """{name: callable} running the net on pre-made batches on the device, and {name: images per call}."""
    import copy

    import torch

    from perceptions.predict.inference import NetForward
    from perceptions.predict.pipeline import resolve_precision
    from perceptions.runtime import Precision

    device = model.device
    precision = resolve_precision(device, "auto")
    size = model.preprocess.input_size
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(len(c), 3, size, size, generator=g).to(device).contiguous(memory_format=torch.channels_last)
               for c in chunks(list(range(n)), batch_size)]
    big = [torch.cat(batches[i:i + 4]) for i in range(0, len(batches), 4)]
    nchw_net = copy.deepcopy(model.net).to(memory_format=torch.contiguous_format)
    nchw_batches = [b.contiguous() for b in batches]

    def nchw(x):  # NetForward turns its input to channels_last; this is the same forward without that
        with precision.context():
            return nchw_net.head(nchw_net.features(x).float())

    def run(forward, inputs):
        @torch.inference_mode()
        def go():
            for x in inputs:
                forward(x)
            synchronize(device)
        return go

    # "bare": as predict runs (the precision resolve_precision gives, channels_last); the others change one thing
    cases = {"bare": run(NetForward(model.net, precision), batches),
             "bare fp32": run(NetForward(model.net, Precision(device.type, None)), batches),
             "bare NCHW": run(nchw, nchw_batches),
             "bare batch x4": run(NetForward(model.net, precision), big)}
    return cases, {name: n for name in cases}


def gpu_decode_predict(model, paths: list[str], batch_size: int):
    """predict_paths' output for JPEGs decoded on the model's device: file bytes read by threads (the next batch
    while this one runs), nvJPEG in one call per batch, the package's crop transform on the device (images of
    one size resized together), NetForward on uint8 batches normalised there, rows as predict_paths builds them.
    A prototype for what a `--decode gpu` option in predict could be; not the library's path."""
    import pandas as pd
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    from perceptions.predict.inference import NetForward, to_scores
    from perceptions.predict.pipeline import build_rows, resolve_precision

    device = model.device
    forward = NetForward(model.net, resolve_precision(device, "auto"), normalize=model.normalize)

    def read(path):
        return torch.frombuffer(bytearray(Path(path).read_bytes()), dtype=torch.uint8)

    parts = []
    with ThreadPoolExecutor(READ_THREADS) as pool, warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision >= 0.29 warns on every decode_jpeg call
        pending = list(pool.map(read, paths[:batch_size]))
        for start in range(0, len(paths), batch_size):
            data = pending
            following = paths[start + batch_size:start + 2 * batch_size]
            upcoming = pool.map(read, following) if following else iter(())
            images = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
            crops, by_shape = [None] * len(images), {}
            for i, image in enumerate(images):
                by_shape.setdefault(tuple(image.shape), []).append(i)
            for members in by_shape.values():
                for i, crop in zip(members, model.crop_transform(torch.stack([images[i] for i in members]))):
                    crops[i] = crop
            batch = torch.stack(crops).contiguous(memory_format=torch.channels_last)
            scores = to_scores(forward(batch))
            parts.append(build_rows(model, paths[start:start + batch_size], scores))
            pending = list(upcoming)
    return pd.concat(parts, ignore_index=True)


def decode_cases(paths: list[str], device, batch_size: int, side: int) -> tuple[dict, dict]:
    """Decoding JPEG bytes already in memory: Pillow (whole, and reduced as far as keeps `side` px, as
    perceptions.data.images does), torchvision's CPU operator, nvJPEG batched on `device` (always whole)."""
    import torch
    from PIL import Image
    from torchvision.io import ImageReadMode, decode_jpeg

    data = [Path(p).read_bytes() for p in paths]
    tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in data]
    rgb = ImageReadMode.RGB

    def pillow(reduce=False):
        def go():
            for d in data:
                with Image.open(io.BytesIO(d)) as image:
                    if reduce:
                        image.draft("RGB", (side, side))  # a 400x300 JPEG -> 200x150 for side 128
                    image.convert("RGB").load()
        return go

    def torchvision_cpu():  # the operator perceptions.data.images.load_rgb calls
        for t in tensors:
            torch.ops.image.decode_jpeg(t, rgb.value, False)

    def batched():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            for part in chunks(tensors, batch_size):
                decode_jpeg(part, mode=rgb, device=device)
        synchronize(device)

    cases = {"pillow": pillow(), "pillow reduced": pillow(reduce=True), "torchvision cpu": torchvision_cpu,
             f"decode_jpeg batched on {device.type}": batched}
    return cases, {name: len(data) for name in cases}


# --------------------------------------------------------------------------------------------------- run

def run(device_spec: str = "cuda", n_images: int = 2048, repeats: int = 3, workers=(0, 4, 8),
        batch_size: int = 64, decode_images: int = 512) -> dict:
    import torch

    from perceptions.predict.model import load_model
    from perceptions.predict.pipeline import predict_paths, resolve_precision

    device = torch.device(device_spec)
    started = time.perf_counter()
    paths = jpeg_folder(n_images)
    model = load_model(device=device)  # the shipped model, channels_last
    precision = resolve_precision(model.device, "auto")

    cases, items = bare_cases(model, n_images, batch_size)
    rows = {}

    def predict_with(w):
        def go():
            df, skipped = predict_paths(model, paths, batch_size=batch_size, num_workers=w, progress=False)
            rows[f"predict w={w}"] = (df, len(skipped))
        return go

    def gpu_decode():
        rows["gpu decode"] = (gpu_decode_predict(model, paths, batch_size), 0)
    cases.update({**{f"predict w={w}": predict_with(w) for w in workers}, "gpu decode": gpu_decode})
    items.update({name: n_images for name in cases if name not in items})
    times = alternate(cases, repeats=repeats, warmup=1)

    bare = "bare"
    figures = {name: rate(times[name], items[name]) for name in cases}
    for name in set(cases) - {bare}:
        figures[name]["vs_bare"] = paired_ratio(times[name], items[name], times[bare], items[bare])
    for name, (df, skipped) in rows.items():  # every file scored, none skipped
        figures[name].update(rows=len(df), skipped=skipped)

    agreement = score_agreement(rows[f"predict w={workers[0]}"][0], rows["gpu decode"][0])

    decode_paths = paths[:min(decode_images, n_images)]
    dcases, ditems = decode_cases(decode_paths, device, batch_size, model.preprocess.decode_side)
    dtimes = alternate(dcases, repeats=repeats, warmup=1)
    decode = {name: rate(dtimes[name], ditems[name]) for name in dcases}
    batched = f"decode_jpeg batched on {device.type}"
    for name in ("pillow", "pillow reduced", "torchvision cpu"):
        decode[batched][f"vs_{name.replace(' ', '_')}"] = paired_ratio(dtimes[batched], ditems[batched],
                                                                        dtimes[name], ditems[name])

    best = max(workers, key=lambda w: figures[f"predict w={w}"]["per_s_median"])
    return {
        "title": "GPU throughput: predict_paths and a GPU-decoding prototype against the bare net; JPEG decoding",
        "device": str(device),
        "exercise_only": device.type != "cuda",  # --allow-cpu: the code ran, the figures mean nothing
        "machine": {**machine(), **cuda_facts(device)},
        "inputs": {"backbone": model.meta["backbone"], "image_size": model.preprocess.input_size,
                   "precision": precision.name, "channels_last": True, "batch_size": batch_size,
                   "images": n_images, "jpeg": "synthetic 400x300 street scenes", "workers": list(workers),
                   "pin_memory": device.type == "cuda", "repeats": repeats, "decode_images": len(decode_paths),
                   "read_threads_gpu_decode": READ_THREADS},
        "figures": figures,
        "decode": decode,
        "gpu_decode_agreement": agreement,
        "summary": {"ceiling_images_per_s": figures[bare]["per_s_median"],
                    "best_predict_workers": best,
                    "best_predict_vs_bare": figures[f"predict w={best}"]["vs_bare"],
                    "gpu_decode_vs_bare": figures["gpu decode"]["vs_bare"],
                    "gpu_decode_vs_best_predict": paired_ratio(times["gpu decode"], n_images,
                                                               times[f"predict w={best}"], n_images),
                    # what predict's choices are worth on the bare net (paired rounds): > 1 means they pay
                    f"{precision.name}_vs_fp32": round(1 / figures["bare fp32"]["vs_bare"], 3),
                    "channels_last_vs_nchw": round(1 / figures["bare NCHW"]["vs_bare"], 3),
                    "nvjpeg_vs_torchvision_cpu_one_process": decode[batched]["vs_torchvision_cpu"],
                    "nvjpeg_vs_pillow_reduced_one_process": decode[batched]["vs_pillow_reduced"]},
        "seconds": round(time.perf_counter() - started, 1),
    }


def score_agreement(reference, other) -> dict:
    """Mean and max |score difference| of two prediction tables of the same files, against SCORE_AGREEMENT."""
    import numpy as np

    if list(other["path"]) != list(reference["path"]):
        return {"same_rows": False, "ok": False}
    columns = [c for c in reference.columns if c.endswith("_score")]
    diff = np.abs(other[columns].to_numpy() - reference[columns].to_numpy())
    mean = round(float(diff.mean()), 5)
    return {"same_rows": True, "mean_abs_score_diff": mean, "max_abs_score_diff": round(float(diff.max()), 5),
            "expected_mean_below": SCORE_AGREEMENT, "ok": mean <= SCORE_AGREEMENT}


def cuda_facts(device) -> dict:
    import torch

    if device.type != "cuda":
        return {"cuda": None}
    props = torch.cuda.get_device_properties(device)
    return {"cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(), "gpu_name": props.name,
            "gpu_capability": f"{props.major}.{props.minor}", "gpu_memory_gb": round(props.total_memory / 2**30, 1),
            "gpu_multiprocessors": props.multi_processor_count, "bf16_supported": torch.cuda.is_bf16_supported(),
            # "fp32" convolutions run in TF32 when cuDNN allows it (torch's default)
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32, "cpu_count": os.cpu_count()}


def report(result: dict) -> str:
    lines = [f"{result['title']} ({result['device']}, {result['inputs']['precision']}, "
             f"{result['inputs']['images']} images, batch {result['inputs']['batch_size']})"]
    for name, f in result["figures"].items():
        extra = f"  {f['vs_bare']:.3f} of bare" if "vs_bare" in f else ""
        lines.append(f"  {name:<28} {f['per_s_median']:>10.1f} img/s{extra}")
    for name, f in result["decode"].items():
        extra = "".join(f"  {v:.2f}x {k[3:].replace('_', ' ')}" for k, v in f.items() if k.startswith("vs_"))
        lines.append(f"  decode: {name:<28} {f['per_s_median']:>10.1f} img/s{extra}")
    a = result["gpu_decode_agreement"]
    lines.append(f"  gpu decode vs predict_paths: mean |score diff| {a.get('mean_abs_score_diff')} (max "
                 f"{a.get('max_abs_score_diff')}, same rows {a['same_rows']}): {'ok' if a['ok'] else 'NOT AS EXPECTED'}")
    lines.append("  summary: " + ", ".join(f"{k} {v}" for k, v in result["summary"].items()))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- in-group

def run_in_group(argv: list[str]) -> int:
    """`in-group -- COMMAND ARGS`: a perceptions command inside this torchrun job's process group, formed here
    even with one process (see the module docstring); the backend is printed as 'process group: backend=...'."""
    import torch
    import torch.distributed as dist

    from perceptions.cli import main

    args = argv[argv.index("--") + 1:] if "--" in argv else argv
    if "LOCAL_RANK" not in os.environ or not args:
        print("usage: torchrun --standalone --nproc-per-node N -m benchmarks.bench_gpu in-group -- COMMAND ARGS",
              file=sys.stderr)
        return 2
    device = args[args.index("--device") + 1] if "--device" in args[:-1] else "auto"
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        print(f"process group: backend={dist.get_backend()} world_size={dist.get_world_size()} "
              f"rank={dist.get_rank()}", flush=True)
        code = main(args)
        dist.barrier()
        return code
    finally:
        dist.destroy_process_group()


# ------------------------------------------------------------------------------------------------- main

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write (default: benchmarks/"
                        "gpu_results.json; with --allow-cpu on a CPU: benchmarks/_work/gpu_results_cpu.json)")
    parser.add_argument("--allow-cpu", action="store_true", help="without a CUDA device, run the same code on "
                        "the CPU at tiny sizes (checks the code; the figures mean nothing)")
    parser.add_argument("--images", type=int, default=None, help="JPEGs to predict (default: 2048; CPU: 16)")
    parser.add_argument("--decode-images", type=int, default=512, help="JPEGs per decoding round (default: 512)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds per case (default: 3; CPU: 1)")
    parser.add_argument("--workers", default=None, help="decoding worker counts to time (default: 0,4,8; CPU: 0,2)")
    parser.add_argument("--batch-size", type=int, default=None, help="predict's batch (default: 64; CPU: 8)")
    args = parser.parse_args(argv)
    try:
        args.workers = tuple(int(w) for w in args.workers.split(",")) if args.workers else None
    except ValueError:
        parser.error(f"--workers takes comma-separated whole numbers, got {args.workers!r}")
    if args.workers is not None and min(args.workers) < 0:
        parser.error("--workers counts must be 0 or more")
    for name in ("images", "decode_images", "repeats", "batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from perceptions.files import write_json

    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        print(NO_CUDA)
        return 0
    small = not cuda
    result = run("cuda" if cuda else "cpu",
                 n_images=args.images or (16 if small else 2048),
                 repeats=args.repeats or (1 if small else 3),
                 workers=args.workers or ((0, 2) if small else (0, 4, 8)),
                 batch_size=args.batch_size or (8 if small else 64),
                 decode_images=args.decode_images)
    out = args.out or (DEFAULT_OUT if cuda else CPU_OUT)
    write_json(out, result)
    print(report(result))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["in-group"]:
        sys.exit(run_in_group(sys.argv[2:]))
    sys.exit(main())
