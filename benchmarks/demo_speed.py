"""What the demo's fine-tuning costs per image, against cheaper ways of fine-tuning: the whole net on decoded,
randomly cropped images (the recipe before), or only the backbone's later stages, live or on cached early-stage
maps (train/stage_cache.py). Every variant runs through the library's own phase code (`build_phase`,
`train_step`) on the demo's city, in one process, timed in alternation with the reference (benchmarks/common.py):
on a shared machine the ratios hold where absolute times do not.

    .venv/bin/python -m benchmarks.demo_speed [--steps 6] [--rounds 3] [--only ref,cached_5]
    .venv/bin/python -m benchmarks.demo_speed --threads 1 --clock cpu     # on a machine busy with other work

Prints, per variant: training images/s (a fine-tuning step of `batch_size` images, data loading included, as
the demo runs it), validation images/s (what each epoch's validation costs), the one-off pass that fills the
cache (seconds per image), and the ratio of training images/s to the reference's. A machine where the
reference runs at R images/s runs a variant at about R * ratio (the slow 2-core machine of issue 17: R = 29).
On a machine loaded by other processes, `--threads 1 --clock cpu` counts this process's CPU seconds on one
thread: what each variant computes, without the waits that other people's work adds to wall time.
"""
from __future__ import annotations

import argparse
import json
import time

from benchmarks.common import WORK, machine, median

REFERENCE = "ref"
VARIANTS = {
    REFERENCE: {"frozen_stages": 0, "augment": "crop"},        # the whole net, random crops: the recipe before
    "live_3": {"frozen_stages": 3, "augment": "crop"},         # stem + 2 block groups frozen, run every step
    "live_5": {"frozen_stages": 5, "augment": "crop"},
    "cached_3": {"frozen_stages": 3, "augment": "flip"},       # their maps cached: later stages only
    "cached_4": {"frozen_stages": 4, "augment": "flip"},
    "cached_5": {"frozen_stages": 5, "augment": "flip"},
    "cached_6": {"frozen_stages": 6, "augment": "flip"},
    "cached_7": {"frozen_stages": 7, "augment": "flip"},
}


def alternate(cases: dict, repeats: int, clock) -> dict[str, list[float]]:
    """common.alternate with a choice of clock (wall or process CPU time); one warm-up round."""
    names = list(cases)
    times = {name: [] for name in names}
    for round_ in range(1 + repeats):
        for name in (names if round_ % 2 == 0 else names[::-1]):
            t0 = clock()
            cases[name]()
            if round_:
                times[name].append(clock() - t0)
    return times


def run(steps: int = 6, rounds: int = 3, only: list[str] | None = None, max_images: int | None = None,
        threads: int | None = None, clock: str = "wall") -> dict:
    import dataclasses

    import torch

    from perceptions import runtime
    from perceptions.commands.demo import DEMO_CITY, ensure_city
    from perceptions.nets.perception_net import build_net
    from perceptions.train.config import TrainConfig
    from perceptions.train.phases import build_phase
    from perceptions.train.prepare import prepare_data
    from perceptions.train.schedule import make_optimizer, set_lr
    from perceptions.train.step import train_step

    names = [n for n in VARIANTS if only is None or n in only or n == REFERENCE]
    if threads:
        torch.set_num_threads(threads)
    tick = time.process_time if clock == "cpu" else time.perf_counter
    city = ensure_city(WORK / "demo_city", DEMO_CITY, say=lambda m: None)
    base = TrainConfig(data=str(city), progress=False, final_test=False, max_images=max_images)
    device = torch.device("cpu")
    precision = runtime.choose_precision(device, base.amp_on(device))
    runtime.keep_freed_memory()
    data = prepare_data(base)
    net, preprocess = build_net(base.backbone, data.studies, weights=base.weights)
    preprocess = dataclasses.replace(preprocess, input_size=int(base.image_size), crop_pct=float(base.crop_pct))
    net = net.to(memory_format=torch.channels_last)
    n_val = int(data.counts()["val"])

    built, fill = {}, {}
    for name in names:
        config = base.replace(**VARIANTS[name], workers=0)
        timings: dict = {}
        t0 = tick()
        source, validate, model_fn = build_phase("finetune", net, data, preprocess, config, device, precision,
                                                 timings, {})
        fill[name] = tick() - t0  # the cache pass (cached variants), or just the setup
        built[name] = (config, source, validate, model_fn)

    def train_case(name):
        config, source, _, model_fn = built[name]
        optimizer = make_optimizer(net, config, "finetune")
        set_lr(optimizer, 0.1)
        params = [p for p in net.parameters() if p.requires_grad]
        scaler = precision.grad_scaler()
        net.train()
        for i, batch in enumerate(source.batches(1)):
            if i == steps:
                break
            train_step(model_fn, batch, optimizer, scaler, config, device, params)

    def val_case(name):
        built[name][2]()

    images_per_step = base.batch_size
    train_times = alternate({n: (lambda n=n: train_case(n)) for n in names}, rounds, tick)
    val_times = alternate({n: (lambda n=n: val_case(n)) for n in names}, max(1, rounds - 1), tick)
    figures = {}
    for n in names:
        ips = [steps * images_per_step / t for t in train_times[n]]
        ratio = [(steps * images_per_step / a) / (steps * images_per_step / b)
                 for a, b in zip(train_times[n], train_times[REFERENCE])]
        val_ratio = [b / a for a, b in zip(val_times[n], val_times[REFERENCE])]
        cache_images = len(data.rows("train")) + n_val if n.startswith("cached") else 0
        figures[n] = {"overrides": VARIANTS[n], "train_images_per_s": round(median(ips), 1),
                      "train_ratio_vs_ref": round(median(ratio), 2),
                      "val_images_per_s": round(n_val / median(val_times[n]), 1),
                      "val_ratio_vs_ref": round(median(val_ratio), 2),
                      "cache_pass_s_per_image": round(fill[n] / cache_images, 5) if cache_images else None}
    return {"title": "Fine-tuning cost per image: whole net vs later stages, live or cached",
            "steps_per_case": steps, "rounds": rounds, "batch_size": images_per_step, "clock": clock,
            "threads": torch.get_num_threads(),
            "train_images": int(len(data.rows("train"))), "val_images": n_val,
            "machine": machine(), "figures": figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="fine-tuning steps per timed case")
    parser.add_argument("--rounds", type=int, default=3, help="alternation rounds (after one warm-up round)")
    parser.add_argument("--only", help="comma list of variants besides the reference")
    parser.add_argument("--max-images", type=int, help="a smaller sample of the city (a quick look)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall time, or this process's CPU time (one thread on a busy machine)")
    args = parser.parse_args()
    result = run(args.steps, args.rounds, args.only.split(",") if args.only else None, args.max_images,
                 args.threads, args.clock)
    print(json.dumps(result, indent=2))
    print(f"\n{'variant':10s} {'train img/s':>11s} {'x ref':>6s} {'val img/s':>9s} {'x ref':>6s} {'cache s/img':>11s}")
    for n, f in result["figures"].items():
        cache = f"{f['cache_pass_s_per_image']:.4f}" if f["cache_pass_s_per_image"] else "-"
        print(f"{n:10s} {f['train_images_per_s']:11.1f} {f['train_ratio_vs_ref']:6.2f} {f['val_images_per_s']:9.1f} "
              f"{f['val_ratio_vs_ref']:6.2f} {cache:>11s}")


if __name__ == "__main__":
    main()
