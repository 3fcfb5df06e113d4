"""`perceptions demo` (what `make demo` runs): synthetic city -> training on all six studies -> test metrics.

The demo draws (or reuses) the default synthetic city and trains with `perceptions train`'s defaults, which are
the measured recipe (perceptions/train/config.py): the backbone's features are computed once and a head is
trained on them, then the backbone's later stages are fine-tuned for a few epochs at a reduced image size, on
the cached output of its first stages.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from perceptions.errors import PerceptionsError
from perceptions.files import write_json

HELP = "generate the synthetic city, train on all six studies, and print the test metrics (a few minutes on a CPU)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default="input/synthetic", metavar="DIR",
                        help="where the synthetic city is made (or reused, when made with the same parameters)")
    parser.add_argument("--out", default="outputs/runs", help="parent folder of the run folder")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bars (default: on a terminal; plain lines in a log file)")


def run(args) -> int:
    run_demo(data_dir=args.data_dir, out=args.out, device=args.device, progress=args.progress)
    return 0


# The default synthetic city (perceptions.data.synthetic.generate_city's defaults, written out so a change
# there is a visible change here).
DEMO_CITY = {"n_images": 3000, "n_cities": 4, "votes_per_image": 6, "seed": 0}
MARKER = "demo_city.json"  # written next to the city: the parameters it was made with

# (metric key, column header) of the compact table the demo prints.
DEMO_COLUMNS = (("acc_within_1_decile", "+-1 decile"), ("spearman", "sp~label"), ("spearman_truth", "sp~truth"),
                ("label_spearman_truth", "label~truth"), ("pairwise_acc", "pairwise"))


def ensure_city(folder, params: dict = DEMO_CITY, say=print) -> Path:
    """The synthetic city in `folder`: reused when it was made with `params`, generated when the folder is
    empty or missing; a folder holding anything else is left alone (one clear error)."""
    from perceptions.data.synthetic import generate_city

    folder = Path(folder)
    marker = folder / MARKER
    if marker.is_file():
        try:
            made_with = json.loads(marker.read_text(encoding="utf-8")).get("params")
        except (OSError, ValueError):
            made_with = None
        if made_with == params and (folder / "qscores.tsv").is_file() and (folder / "images").is_dir():
            say(f"[1/3] synthetic city: reusing {folder} ({params['n_images']} scenes)")
            return folder
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise PerceptionsError(f"{folder} already holds files the demo did not write with its parameters; move "
                               "them away or pass --data-dir to use another folder")
    say(f"[1/3] synthetic city: drawing {params['n_images']} street scenes of {params['n_cities']} cities, "
        f"{params['votes_per_image']} votes per image and study, into {folder} (about a minute)...")
    summary = generate_city(folder, **params)
    write_json(marker, {"params": params, "summary": summary})
    say(f"      done in {summary['seconds']:.0f} s: {summary['votes']} votes, TrueSkill scores, truth.csv")
    return folder


def run_demo(data_dir="input/synthetic", out="outputs/runs", recipe: dict | None = None, city: dict | None = None,
             device: str = "auto", progress: bool | None = None, say=print) -> dict:
    """Make (or reuse) the city, train, evaluate; returns {"run_dir", "metrics", "seconds", "targets"}."""
    from perceptions.train.config import TrainConfig
    from perceptions.train.loop import train
    from perceptions.train.stage_cache import stage_cache_used

    started = time.perf_counter()
    folder = ensure_city(data_dir, {**DEMO_CITY, **(city or {})}, say)
    # The demo trains with TrainConfig's defaults, which are the measured recipe (see its docstring), so
    # `perceptions train --data DIR` trains the same way; `recipe` overrides some of them (tests, benchmarks).
    config = TrainConfig(data=str(folder), out=str(out), device=device, progress=progress, **(recipe or {}))
    say(machine_line(config))
    tuned = (f"the backbone's later stages (its first {config.frozen_stage_count} stages stay as pretrained"
             + (", their output cached once per image and mirror image)" if stage_cache_used(config) else ")")
             if config.frozen_stage_count else "the whole net")
    say(f"[2/3] training {config.backbone} on all six studies at {config.image_size} px: {config.freeze_epochs} "
        f"epochs of the head on backbone features computed once, then {config.epochs} epochs fine-tuning "
        f"{tuned} (a few minutes on 2 CPU cores)")
    run_dir = train(config)
    summary = json.loads((Path(run_dir) / "summary.json").read_text(encoding="utf-8"))
    metrics = summary["test"]
    targets = check_targets(metrics)
    seconds = time.perf_counter() - started
    say(f"\n[3/3] test split ({summary['data']['test']} images never seen in training):")
    say(compact_table(metrics))
    say("")
    for line in targets["lines"]:
        say(line)
    say(f"\ndemo finished in {seconds:.0f} s ({seconds / 60:.1f} min, wall time, city included); run folder: "
        f"{run_dir}")
    return {"run_dir": run_dir, "metrics": metrics, "seconds": seconds, "targets": targets}


def machine_line(config) -> str:
    """The CPU (or GPU) the demo runs on, whether the CPU has native bf16, and the precision training uses:
    what a reader needs to compare the wall time with other machines'."""
    import os

    import torch

    from perceptions import runtime

    device = runtime.choose_device(config.device)
    precision = runtime.choose_precision(device, config.amp_on(device)).name
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    where = (f"GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda"
             else f"{cpu_name()}, {cores} cores, {torch.get_num_threads()} torch threads")
    bf16 = "yes" if runtime.cpu_has_native_bf16() else "no"
    return f"      machine: {where}; native bf16 on this CPU: {bf16}; training precision: {precision}"


def cpu_name() -> str:
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def check_targets(metrics: dict) -> dict:
    """The project's targets: +-1 decile accuracy >= 0.60 in every study, and mean Spearman with the truth
    at least the mean Spearman of the crowd's TrueSkill label with the truth."""
    studies = [s for s in metrics if s != "mean"]
    worst = min(studies, key=lambda s: _num(metrics[s].get("acc_within_1_decile")))
    worst_acc = _num(metrics[worst].get("acc_within_1_decile"))
    model = _num(metrics["mean"].get("spearman_truth"))
    label = _num(metrics["mean"].get("label_spearman_truth"))
    decile_met = worst_acc >= 0.60
    truth_met = model >= label if math.isfinite(label) else None
    lines = [f"target +-1 decile >= 0.60 in every study: {'met' if decile_met else 'NOT met'} "
             f"(lowest: {worst} {worst_acc:.3f})"]
    if truth_met is not None:
        lines.append(f"target mean Spearman with truth >= the labels': {'met' if truth_met else 'NOT met'} "
                     f"(model {model:.3f}, TrueSkill labels {label:.3f})")
    return {"decile_met": decile_met, "truth_met": truth_met, "lines": lines}


def _num(v) -> float:
    return float(v) if v is not None else float("nan")


def compact_table(metrics: dict) -> str:
    rows = list(metrics)
    first = max(len("study"), *(len(r) for r in rows))
    head = "  ".join(["study".ljust(first)] + [h.rjust(max(len(h), 6)) for _, h in DEMO_COLUMNS])
    lines = [head]
    for r in rows:
        cells = []
        for key, h in DEMO_COLUMNS:
            v = metrics[r].get(key)
            cells.append(("-" if v is None or not math.isfinite(float(v)) else f"{float(v):.3f}").rjust(max(len(h), 6)))
        lines.append("  ".join([r.ljust(first)] + cells))
    return "\n".join(lines)
