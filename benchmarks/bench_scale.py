"""The full-size rehearsal (`make bench-scale`, long): the whole flow on a Place Pulse-sized synthetic city.

Place Pulse 2.0 has 110,988 images and ~1.17M votes over six studies (~3.5 comparisons per image and study).
This draws a city of that shape (images at 400x300) and of a tenth of it, and runs every stage at both sizes,
each in its own process, recording wall time and peak memory:

  synth      drawing the scenes (on every core), the votes and their scores
  score      votes.tsv -> qscores.tsv (TrueSkill), `perceptions score`
  check      the data doctor over every image and vote, `perceptions check`
  train      `perceptions train --epochs 0 --freeze-epochs 1`: split, image check, the frozen backbone's feature
             cache over the training split, one head epoch, validation, test and the deciles
  finetune   a bounded number of fine-tuning steps of the whole net over the full training split (the loader,
             sampler and split are built for every image; only the steps are bounded)
  evaluate   `perceptions evaluate` on the test split
  predict    `perceptions predict` over every image, 2 processes under torchrun

A stage whose time grows faster than linearly from 1/10 to full size (exponent log(t_full / t_tenth) / log(10)
above 1.15), or whose peak memory grows with N where it should not (predict, score, check: x2 or more from
1/10 to full size), is flagged. Results go into benchmarks/results.json (key "scale") and RESULTS.md.

    .venv/bin/python -m benchmarks.bench_scale                 # 1/10 and full size (hours on 2 cores)
    .venv/bin/python -m benchmarks.bench_scale --sizes 2000,20000 --out benchmarks/_work/scale_try
    .venv/bin/python -m benchmarks.bench_scale --only train     # measure one stage again, the others kept
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

from benchmarks.common import BENCH_DIR, WORK, OutsideLoad, load_average, machine, peak_rss

PLACE_PULSE_IMAGES = 110_988
VOTES_PER_IMAGE = 3.5          # comparisons per image and study: 110,988 x 3.5 / 2 x 6 = 1.17M votes
FINETUNE_STEPS = 30
SUPERLINEAR = 1.15             # time exponent above which a stage is flagged
FLAT_MEMORY = ("score", "check", "predict")
MEMORY_GROWTH = 2.0            # x growth of memory above the fixed cost, from 1/10 to full size, flagged


def stage_commands(city: Path, work: Path, run_dir_fn) -> dict:
    """Each stage's command line; `run_dir_fn()` finds the model the train stage made (called when needed)."""
    py = sys.executable
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    return {
        "score": lambda: [py, "-m", "perceptions", "score", "--votes", str(city / "votes.tsv"),
                          "--out", str(work / "qscores_rescored.tsv"), "--overwrite"],
        "check": lambda: [py, "-m", "perceptions", "check", str(city), "--out", str(work / "check.csv"),
                          "--overwrite", "--no-progress"],
        "train": lambda: [py, "-m", "perceptions", "train", "--data", str(city), "--epochs", "0",
                          "--freeze-epochs", "1", "--out", str(work / "runs"), "--no-progress"],
        "finetune": lambda: [py, "-m", "benchmarks.bench_scale", "--steps-only", str(city),
                             "--steps", str(FINETUNE_STEPS), "--json", str(work / "finetune_steps.json")],
        "evaluate": lambda: [py, "-m", "perceptions", "evaluate", "--model", str(run_dir_fn() / "model"),
                             "--data", str(city), "--split", "test", "--json", str(work / "evaluate.json"),
                             "--overwrite", "--no-progress"],
        "predict": lambda: [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "perceptions", "predict",
                            str(city / "images"), "--model", str(run_dir_fn() / "model"),
                            "--out", str(work / "predictions.csv"), "--overwrite", "--no-progress"],
    }


def newest_run(runs: Path) -> Path:
    found = sorted((p for p in runs.iterdir() if (p / "model").is_dir()), key=lambda p: p.stat().st_mtime)
    if not found:
        raise RuntimeError(f"{runs}: the train stage left no run with a model/")
    return found[-1]


def draw_city(n: int, out: Path, reuse: bool) -> dict:
    """The synth stage: the city drawn once and kept, with its measurement, when `reuse`."""
    city, marker = out / f"city_{n}", out / f"city_{n}.synth.json"
    if reuse and marker.is_file() and (city / "qscores.tsv").is_file():
        return {**json.loads(marker.read_text()), "reused": True}
    if city.exists():
        shutil.rmtree(city)
    cmd = [sys.executable, "-m", "perceptions", "synth", "--out", str(city), "--images", str(n),
           "--votes-per-image", str(VOTES_PER_IMAGE), "--no-progress"]
    print(f"[scale {n}] synth ...", flush=True)
    result = _measured(cmd, out / f"city_{n}.synth.log")
    marker.write_text(json.dumps(result))
    return result


def run_size(n: int, out: Path, reuse: bool, saved=lambda partial: None, only=None, earlier=None) -> dict:
    """Every stage at one size (the city drawn earlier is reused when `reuse`); `saved(partial)` after each stage,
    so an interrupted run keeps what it measured. only: re-measure just these stages, keeping the `earlier`
    report's figures for the others (each re-measured stage records when it ran)."""
    city, work = out / f"city_{n}", out / f"work_{n}"
    logs = work / "logs"
    if work.exists() and only is None:
        shutil.rmtree(work)
    logs.mkdir(parents=True, exist_ok=True)
    stages = dict((earlier or {}).get("stages", {})) if only else {}
    stages["synth"] = stages.get("synth") or draw_city(n, out, reuse)
    votes = sum(1 for _ in open(city / "votes.tsv")) - 1
    commands = stage_commands(city, work, lambda: newest_run(work / "runs"))
    for name, cmd in commands.items():
        if only is not None and name not in only:
            continue
        print(f"[scale {n}] {name} ...", flush=True)
        stages[name] = _measured(cmd(), logs / f"{name}.log")
        if only is not None:
            stages[name]["remeasured"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        print(f"[scale {n}] {name}: {stages[name]['seconds']} s, peak {stages[name]['maxrss_mb']} MB", flush=True)
        saved({"images": n, "votes": votes, "stages": stages, "complete": False})
    steps = work / "finetune_steps.json"
    return {"images": n, "votes": votes, "stages": stages, "complete": True,
            "finetune_steps": json.loads(steps.read_text()) if steps.is_file() else {}}


def _measured(cmd: list[str], log: Path) -> dict:
    with OutsideLoad() as load:
        result = peak_rss(cmd, log_path=log, timeout=6 * 3600)
    return {**result, "outside_cpu_share": load.result["outside_cpu_share"],
            "load_average_after": load.result["load_average_after"]}


def growth(small: dict, full: dict) -> dict:
    """Per stage: the time exponent and the growth of peak memory, with their flags."""
    ratio_n = full["images"] / small["images"]
    table = {}
    for name, a in small["stages"].items():
        b = full["stages"].get(name)
        if b is None:
            continue
        exponent = math.log(b["seconds"] / a["seconds"]) / math.log(ratio_n)
        mem = b["maxrss_mb"] / a["maxrss_mb"]
        table[name] = {"time_exponent": round(exponent, 2), "memory_growth": round(mem, 2),
                       "superlinear": exponent > SUPERLINEAR,
                       "memory_grows": name in FLAT_MEMORY and mem >= MEMORY_GROWTH}
    return table


def steps_only(city: Path, steps: int, out: Path) -> None:
    """The finetune stage's body: build the fine-tuning phase for the whole training split, run `steps` steps."""
    from benchmarks.bench_train_pipeline import WHOLE_NET, PhaseRunner, training_setup

    t0 = time.perf_counter()
    setup = training_setup(city, epochs=1, freeze_epochs=0, **WHOLE_NET)  # decoded images, as measured
    built = time.perf_counter()
    runner = PhaseRunner(setup, "finetune")
    ready = time.perf_counter()
    done = 0
    for batch in runner.source.batches(1):
        runner.step(batch)
        done += 1
        if done >= steps:
            break
    images = done * runner.source.batch_size
    end = time.perf_counter()
    out.write_text(json.dumps({"prepare_s": round(built - t0, 2), "phase_build_s": round(ready - built, 2),
                               "steps": done, "images": images, "steps_s": round(end - ready, 2),
                               "images_per_s": round(images / max(end - ready, 1e-9), 1),
                               "train_images": int((setup.data.split == "train").sum())}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=f"{PLACE_PULSE_IMAGES // 10},{PLACE_PULSE_IMAGES}",
                        help="two image counts, small then large (default: a tenth of Place Pulse, then all)")
    parser.add_argument("--out", default=None, help="results folder (default: benchmarks/, the cities in _work/)")
    parser.add_argument("--no-reuse", action="store_true", help="redraw cities even when already drawn")
    parser.add_argument("--draw-only", action="store_true", help="only draw the cities (kept for a later run)")
    parser.add_argument("--only", help="comma list of stages to measure again (e.g. train), the other stages' "
                                       "figures kept from the last run in results.json")
    parser.add_argument("--steps-only", metavar="CITY", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=FINETUNE_STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps_only:
        steps_only(Path(args.steps_only), args.steps, Path(args.json))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    results_dir = Path(args.out) if args.out else BENCH_DIR
    cities = WORK / "scale" if args.out is None else Path(args.out)
    cities.mkdir(parents=True, exist_ok=True)
    if args.draw_only:
        for n in sizes:
            draw_city(n, cities, reuse=not args.no_reuse)
        return 0
    only = set(args.only.split(",")) if args.only else None
    previous = json.loads((results_dir / "results.json").read_text()).get("scale", {}) \
        if only and (results_dir / "results.json").is_file() else {}
    if only and not previous:
        parser.error("--only needs an earlier full run in results.json")
    fixed = peak_rss([sys.executable, "-c", "import torch, timm, perceptions.predict.job"])["maxrss_mb"]
    report = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
              "load_average_start": load_average(), "fixed_mb": fixed, "sizes": {}}
    if only:  # the run being completed keeps its start, load and fixed cost; the stages say when they ran again
        report = {**previous, "sizes": dict(previous["sizes"]), "remeasured": sorted(only)}
    for n in sizes:
        def saved(partial, n=n):
            report["sizes"][str(n)] = partial
            _save(report, results_dir)

        report["sizes"][str(n)] = run_size(n, cities, reuse=not args.no_reuse, saved=saved, only=only,
                                           earlier=previous.get("sizes", {}).get(str(n)))
        _save(report, results_dir)
    small, full = (report["sizes"][str(n)] for n in sizes[:2])
    report["growth"] = growth(small, full)
    report["load_average_end"] = load_average()
    _save(report, results_dir)
    flagged = [k for k, g in report["growth"].items() if g["superlinear"] or g["memory_grows"]]
    print(f"scale: flagged stages: {', '.join(flagged) or 'none'}")
    return 0


def _save(report: dict, results_dir: Path) -> None:
    """Into results.json's "scale" entry (the other benchmarks' entries kept), then RESULTS.md re-rendered."""
    from benchmarks.run_all import markdown

    path = results_dir / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {"benchmarks": {}}
    results["scale"] = report
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if "machine" in results and "started" in results:
        (results_dir / "RESULTS.md").write_text(markdown(results))


if __name__ == "__main__":
    sys.exit(main())
