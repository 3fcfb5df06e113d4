"""Benchmark 4: frozen backbone with cached features vs full fine-tuning, seconds per epoch.

Both phases are built and run by the library exactly as `train()` runs them (`build_phase`, `make_optimizer`,
`run_epoch`, then the phase's validation): the frozen phase computes the backbone features of the training
and validation images once (a one-off cost, reported), then each epoch trains the head on them; a fine-tuning
epoch decodes, augments and back-propagates through the whole net. Epochs of the two alternate.

    .venv/bin/python -m benchmarks.bench_frozen [--quick]
"""
from __future__ import annotations

from benchmarks.bench_train_pipeline import WHOLE_NET, PhaseRunner, training_setup
from benchmarks.common import alternate, bench_city, median, run_as_script


def run(quick: bool = False, n_images: int | None = None, repeats: int | None = None,
        recipe_epochs: int = 10) -> dict:
    n_images = n_images or (48 if quick else 96)
    repeats = repeats or (1 if quick else 3)
    city = bench_city()
    # The whole net, decoded and augmented images: what a head epoch on cached features spares.
    setup = training_setup(city, max_images=n_images, batch_size=32, epochs=1, freeze_epochs=1, **WHOLE_NET)
    frozen = PhaseRunner(setup, "frozen")          # computes the feature cache (timed inside build_phase)
    finetune = PhaseRunner(setup, "finetune")
    parts: dict[str, list[float]] = {}

    def epoch_of(runner, name):
        import time

        def go():
            t0 = time.perf_counter()
            runner.epoch()
            t1 = time.perf_counter()
            runner.validate()
            parts.setdefault(f"{name}_train", []).append(t1 - t0)
            parts.setdefault(f"{name}_validate", []).append(time.perf_counter() - t1)
        return go

    times = alternate({"frozen": epoch_of(frozen, "frozen"), "finetune": epoch_of(finetune, "finetune")},
                      repeats=repeats, warmup=1)
    cache_s = frozen.timings.get("features_s", frozen.build_s)
    frozen_s, finetune_s = median(times["frozen"]), median(times["finetune"])
    speedup = round(median([ft / fr for fr, ft in zip(times["frozen"], times["finetune"])]), 1)
    # parts hold the warm-up round too; drop it so medians match `times`
    part_medians = {k: round(median(v[1:] or v), 4) for k, v in parts.items()}
    return {
        "title": "Frozen backbone on cached features vs full fine-tuning (seconds per epoch)",
        "inputs": {"backbone": setup.config.backbone, "image_size": setup.preprocess.input_size,
                   "batch_size": setup.config.batch_size, "precision": setup.precision.name,
                   "train_images": frozen.images, "val_images": int(len(setup.data.rows("val"))),
                   "repeats": repeats},
        "figures": {
            "feature_cache_seconds": round(cache_s, 2),
            "cached_images": int(len(setup.data.rows("train")) + len(setup.data.rows("val"))),
            "frozen_epoch_seconds": round(frozen_s, 4),
            "finetune_epoch_seconds": round(finetune_s, 3),
            "parts_seconds": part_medians,
            f"{recipe_epochs}_epochs_frozen_seconds": round(cache_s + recipe_epochs * frozen_s, 2),
            f"{recipe_epochs}_epochs_finetune_seconds": round(recipe_epochs * finetune_s, 2),
            "cache_pays_off_after_epochs": round(cache_s / max(finetune_s - frozen_s, 1e-9), 2),
        },
        "ratio": speedup,
        "ratio_name": "speedup per epoch (fine-tuning epoch / frozen epoch, validation included)",
        "target": None,
        "verdict": "reported",
    }


if __name__ == "__main__":
    run_as_script(run, __doc__)
