"""Scoring new images with a trained model package, and what is built on the scores.

- `model`: `load_model(path)` -> `PerceptionModel` (the net, its preprocessing and deciles); `.predict(images)`.
- `inference`: the one inference path (`NetForward`, `to_scores`, `to_deciles`), shared with train and evaluate.
- `pipeline`: paths or PIL images -> decoded batches -> rows of scores and deciles (`predict_paths`).
- `inputs`: which images a run reads (files, folders, .txt/.csv lists); no torch.
- `writers`: the output table (CSV, Parquet, GeoJSON), its side files, reading it back; no torch.
- `job`: `predict_to_file`, the resumable job behind `perceptions predict`, sharded across torchrun processes.
- `explain`: Grad-CAM heat maps (`perceptions explain`).
- `maps`: static maps of predicted scores (`perceptions map`).

`load_model` and `PerceptionModel` are importable from here; they load lazily, so `inputs`, `writers` and `maps`
stay free of torch.
"""
from __future__ import annotations

__all__ = ["PerceptionModel", "load_model"]


def __getattr__(name: str):
    if name in __all__:
        from perceptions.predict.model import PerceptionModel, load_model

        return {"PerceptionModel": PerceptionModel, "load_model": load_model}[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
