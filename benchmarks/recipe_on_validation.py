"""Re-check the demo's recipe on the VALIDATION split only: a few variants of `perceptions train`'s defaults on
the demo's city, each scored by its best epoch's validation metrics. No test figure is computed (the runs use
`final_test=False`), so choosing among them does not look at the test split, which `make demo` evaluates once.

    .venv/bin/python -m benchmarks.recipe_on_validation            # ~4 minutes a variant on 2 CPU cores
    .venv/bin/python -m benchmarks.recipe_on_validation --only defaults,epochs_12

Writes benchmarks/recipe_validation.json and prints a table; the variant with the highest mean validation
Spearman (the default monitor) is the recipe, and TrainConfig's defaults should be it.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.common import BENCH_DIR, WORK, machine

VARIANTS = {
    "defaults": {},                      # TrainConfig's defaults: what make demo trains
    "epochs_5": {"epochs": 5},
    "epochs_12": {"epochs": 12},
    "image_160": {"image_size": 160},
    "augment_flip": {"augment": "flip"},
    "loss_regression": {"loss": "regression"},
    "backbone_lr_0.1": {"backbone_lr_mult": 0.1},
    "bn_trained": {"freeze_bn": False},
}
KEYS = ("val_spearman", "val_within1", "val_pairwise", "val_loss")


def best_row(run_dir: Path, monitor: str = "val_spearman") -> dict:
    import pandas as pd

    metrics = pd.read_csv(run_dir / "metrics.csv")
    row = metrics.loc[metrics[monitor].idxmax()]
    return {"best_epoch": int(row["epoch"]), **{k: round(float(row[k]), 4) for k in KEYS if k in row}}


def run_variant(city: Path, name: str, overrides: dict) -> dict:
    from perceptions.train.config import TrainConfig
    from perceptions.train.loop import train

    config = TrainConfig(data=str(city), out=str(WORK / "runs_recipe"), progress=False, final_test=False,
                         **overrides)
    t0 = time.perf_counter()
    run_dir = train(config)
    return {"variant": name, "overrides": overrides, "seconds": round(time.perf_counter() - t0, 1),
            "run_dir": str(run_dir), **best_row(Path(run_dir))}


def main() -> None:
    from perceptions.commands.demo import DEMO_CITY, ensure_city

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma list of variants (default: all)")
    parser.add_argument("--city", default=str(WORK / "demo_city"), help="the demo's city (made if missing)")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(VARIANTS)
    city = ensure_city(Path(args.city), DEMO_CITY)
    out = BENCH_DIR / "recipe_validation.json"
    results = json.loads(out.read_text())["variants"] if out.is_file() else {}
    for name in names:
        results[name] = run_variant(city, name, VARIANTS[name])
        out.write_text(json.dumps({"machine": machine(), "city": DEMO_CITY, "variants": results}, indent=2) + "\n")
    print(f"{'variant':18s} {'best ep':>7s} " + " ".join(f"{k:>12s}" for k in KEYS) + f" {'seconds':>8s}")
    for name, r in results.items():
        print(f"{name:18s} {r['best_epoch']:7d} " + " ".join(f"{r.get(k, float('nan')):12.4f}" for k in KEYS)
              + f" {r['seconds']:8.0f}")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
