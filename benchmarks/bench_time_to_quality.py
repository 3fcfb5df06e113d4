"""Benchmark 6: time to quality. How long the main job takes and what it reaches; and what transfer learning
buys: EfficientNet-Lite0/1/2 (packaged ImageNet weights) and an untrained ResNet-18 (no transfer) trained with
one short recipe on one smaller synthetic city.

The main job is `perceptions demo` (`perceptions.commands.demo.run_demo`, what `make demo` runs): its city is made
first (timed apart, it is made once per machine), then the run is timed from start to test metrics. The
backbone comparison is the demo's recipe without its fine-tuning epochs (head-only epochs on cached features),
so that four backbones cost about what one fine-tuning epoch does; every run is the library's `train()`.
Metrics are the test split's means over the six studies, from each run's summary.json.

    .venv/bin/python -m benchmarks.bench_time_to_quality [--quick] [--no-main]
"""
from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

from benchmarks.common import REPO, WORK, synthetic_city, timed

COMPARISON_CITY = {"n_images": 600, "n_cities": 4}
COMPARED = (("efficientnet_lite0", "packaged"), ("efficientnet_lite1", "packaged"),
            ("efficientnet_lite2", "packaged"), ("resnet18", "none"))
KEEP = ("spearman", "spearman_truth", "label_spearman_truth", "acc_within_1_decile", "pairwise_acc",
        "ceiling_within_1_decile")
QUICK_CITY = {"n_images": 120, "n_cities": 4}


def comparison_recipe(quick: bool = False) -> dict:
    """The demo's recipe (TrainConfig's defaults), head-only: the same image size, loss and head epochs, no
    fine-tuning epochs."""
    recipe = {"epochs": 0}
    if quick:
        recipe["freeze_epochs"] = 3
    return recipe


def measures(summary: dict, seconds: float, run_dir, recipe: dict) -> dict:
    test = summary.get("test", {})
    mean = test.get("mean", {})
    studies = [s for s in test if s != "mean"]
    run_dir = Path(run_dir)
    return {
        "backbone": summary.get("backbone", recipe.get("backbone")), "weights": recipe.get("weights"),
        "wall_seconds": round(seconds, 1),
        "timings_s": summary.get("timings_s"),
        "test_images": summary.get("data", {}).get("test"),
        "mean": {k: round(mean[k], 4) for k in KEEP if isinstance(mean.get(k), (int, float))},
        "min_within_1_decile": round(min(test[s]["acc_within_1_decile"] for s in studies), 4) if studies else None,
        "run_dir": str(run_dir.relative_to(REPO)) if REPO in run_dir.resolve().parents else str(run_dir),
    }


@contextlib.contextmanager
def logged(name: str):
    log = WORK / "logs" / f"quality_{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        yield out


def main_job(quick: bool = False) -> tuple[dict, dict]:
    from perceptions.commands.demo import DEMO_CITY, ensure_city, run_demo

    city_params = {**DEMO_CITY, **QUICK_CITY} if quick else dict(DEMO_CITY)
    recipe = {"freeze_epochs": 3, "epochs": 1} if quick else {}  # {}: TrainConfig's defaults, the recipe
    folder = WORK / ("demo_city_quick" if quick else "demo_city")
    _forget_stale_city(folder, city_params)
    with logged("main") as log:
        city_s, _ = timed(lambda: ensure_city(folder, city_params, say=lambda m: print(m, file=log)))
        seconds, result = timed(lambda: run_demo(data_dir=folder, out=WORK / "runs_quality", recipe=recipe,
                                                 city=city_params, progress=False,
                                                 say=lambda m: print(m, file=log)))
    summary = json.loads((Path(result["run_dir"]) / "summary.json").read_text())
    figures = {**measures(summary, seconds, result["run_dir"], recipe),
               "city_seconds": round(city_s, 1),
               "targets": result.get("targets", {}).get("lines")}
    inputs = {"city": city_params, "recipe": recipe, "source": "perceptions.commands.demo (DEMO_CITY, TrainConfig defaults)"}
    return inputs, figures


def _forget_stale_city(folder: Path, params: dict) -> None:
    """ensure_city refuses a folder made with other parameters (it protects users' data); this one is ours."""
    import shutil

    from perceptions.commands.demo import MARKER

    marker = folder / MARKER
    try:
        made_with = json.loads(marker.read_text()).get("params")
    except (OSError, ValueError):
        made_with = None
    if folder.exists() and made_with != params:
        shutil.rmtree(folder)


def backbone_run(city, backbone: str, weights: str, recipe: dict) -> dict:
    from perceptions.train.config import TrainConfig
    from perceptions.train.loop import train

    recipe = {**recipe, "backbone": backbone, "weights": weights}
    config = TrainConfig(data=str(city), out=str(WORK / "runs_quality"), progress=False, **recipe)
    with logged(f"{backbone}_{weights}"):
        seconds, run_dir = timed(lambda: train(config))
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    return measures(summary, seconds, run_dir, recipe)


def run(quick: bool = False, include_main: bool = True) -> dict:
    figures: dict = {}
    inputs: dict = {}
    if include_main:
        inputs["main_job"], figures["main_job"] = main_job(quick)
    city_params = QUICK_CITY if quick else COMPARISON_CITY
    recipe = comparison_recipe(quick)
    city = synthetic_city("city_quick" if quick else "city_compare", **city_params)
    inputs["backbones"] = {"city": city_params, "recipe": recipe,
                           "note": "the demo's recipe without fine-tuning epochs (head on cached features) for "
                                   "every backbone, at the demo's image size; resnet18 untrained = no transfer"}
    compared = COMPARED if not quick else COMPARED[:1] + COMPARED[-1:]
    figures["backbones"] = {f"{b} ({w})": backbone_run(city, b, w, recipe) for b, w in compared}
    lite0 = figures["backbones"].get("efficientnet_lite0 (packaged)", {}).get("mean", {})
    scratch = figures["backbones"].get("resnet18 (none)", {}).get("mean", {})
    gain = (round(lite0["spearman_truth"] - scratch["spearman_truth"], 3)
            if "spearman_truth" in lite0 and "spearman_truth" in scratch else None)
    main_mean = figures.get("main_job", {}).get("mean", {})
    met = None
    if "spearman_truth" in main_mean and "label_spearman_truth" in main_mean:
        met = main_mean["spearman_truth"] >= main_mean["label_spearman_truth"]
    return {
        "title": "Time to quality: the main job, and backbones with vs without transfer",
        "inputs": inputs,
        "figures": figures,
        "transfer_gain_spearman_truth": gain,
        "ratio": main_mean.get("spearman_truth"),
        "ratio_name": "main job: test Spearman(prediction, truth), mean over studies",
        "target": main_mean.get("label_spearman_truth"),
        "target_name": "Spearman(TrueSkill label, truth)",
        "verdict": "reported" if met is None else "met" if met else "MISSED",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-main", dest="include_main", action="store_false")
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick, include_main=args.include_main), indent=2))


if __name__ == "__main__":
    main()
