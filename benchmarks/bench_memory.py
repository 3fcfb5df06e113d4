"""Benchmark 7: peak memory (RSS) of `perceptions train` and `perceptions predict`, each in its own process.

Each command runs under a fresh wrapper (benchmarks.common rss) that reports
  maxrss_mb     getrusage(RUSAGE_CHILDREN).ru_maxrss: the largest single process (the trainer or predictor);
  tree_peak_mb  the largest sum of RSS over the command and its DataLoader workers, sampled every 50 ms
                (shared pages of forked workers are counted in each, so this overstates a little).
A bare `import torch, perceptions` process gives the fixed cost of the interpreter and libraries.

    .venv/bin/python -m benchmarks.bench_memory [--quick]
"""
from __future__ import annotations

import sys

from benchmarks.common import WORK, bench_city, peak_rss, run_as_script


def run(quick: bool = False, train_images: int | None = None) -> dict:
    from benchmarks.bench_predict import bench_package

    train_images = train_images or (48 if quick else 96)
    city = bench_city()
    package = bench_package()
    logs = WORK / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    commands = {
        "import_only": [py, "-c", "import torch, torchvision, timm, perceptions.predict.job, perceptions.train.loop"],
        "train": [py, "-m", "perceptions", "train", "--data", str(city), "--max-images", str(train_images),
                  "--epochs", "1", "--batch-size", "32", "--out", str(WORK / "runs_memory"), "--no-progress"],
        "predict": [py, "-m", "perceptions", "predict", str(city / "images"), "--model", str(package),
                    "--out", str(WORK / "memory_predictions.csv"), "--overwrite", "--no-progress"],
    }
    figures = {name: peak_rss(cmd, log_path=logs / f"memory_{name}.log", timeout=900)
               for name, cmd in commands.items()}
    n_predict = len(list((city / "images").iterdir()))
    return {
        "title": "Peak memory (RSS) of train and predict",
        "inputs": {"train": f"efficientnet_lite0 packaged, batch 32, 1 epoch on {train_images} images "
                            "(default workers), evaluation and model package included",
                   "predict": f"{n_predict} JPEGs 400x300, batch 64, default workers, CSV output",
                   "commands": {k: " ".join(v[1:]) for k, v in commands.items()}},
        "figures": figures,
        "ratio": None,
        "ratio_name": None,
        "target": None,
        "verdict": "reported",
    }


if __name__ == "__main__":
    run_as_script(run, __doc__)
