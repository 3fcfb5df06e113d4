"""The shipped model package: a folder of plain data, never a pickle.

    model.safetensors   weights (the whole net, or only the head when the backbone is the untouched packaged one)
    model.json          what is needed to rebuild and use the net (validated on load, with a format version)
    MODEL_CARD.md       what it was trained on, how well it did, what it is for and not for

Loading reads tensors with safetensors and metadata with json: nothing in a package can run code.
Training checkpoints (which hold optimizer state) are read with `perceptions.files.read_torch_file`, i.e.
torch.load with weights_only=True, which refuses pickled objects other than tensors and plain containers.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path

from perceptions.data.images import Preprocess
from perceptions.errors import PerceptionsError
from perceptions.files import fsync_file, fsync_folder, json_text, usual_permissions
from perceptions.studies import study

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"
CARD_FILE = "MODEL_CARD.md"

# key -> accepted types; everything a loader relies on. Callers' extra meta keys are kept as they are.
_REQUIRED = {
    "format_version": int, "perceptions_version": str, "created": str, "backbone": str, "weights": str,
    "head_only": bool, "num_features": int, "dropout": (int, float), "preprocess": dict, "studies": list,
    "scaling": dict, "training": dict, "metrics": dict,
}


def save_package(directory, net, preprocess: Preprocess, scaling: dict, meta: dict | None = None,
                 card: str | None = None, head_only: bool = False, overwrite: bool = False,
                 half_backbone: bool = False) -> Path:
    """Write a model package atomically (a temp folder renamed into place). An existing non-empty folder is
    refused unless overwrite=True. head_only stores just the head and names the packaged backbone weights;
    it is refused when the backbone differs from those weights (it was fine-tuned). half_backbone stores the
    backbone's float weights as float16 (half the file; loading casts them back to float32, a relative change
    of ~5e-4, below what bf16 inference already rounds); the head stays float32, so scores keep their steps."""
    from safetensors.torch import save_file

    from perceptions.version import __version__

    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise PerceptionsError(f"{target}: exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise PerceptionsError(f"{target}: folder exists and is not empty; choose another or allow overwriting")
    scaling = scaling.to_dict() if hasattr(scaling, "to_dict") else scaling
    meta = dict(meta or {})
    clash = sorted(set(meta) & (set(_REQUIRED) - {"training", "metrics"}))
    if clash:
        raise ValueError(f"meta may not set {clash}: save_package fills them in")
    if head_only:
        _check_backbone_is_packaged(net)
    info = {
        "format_version": FORMAT_VERSION,
        "perceptions_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "backbone": net.backbone_name,
        "weights": str(net.weights),
        "head_only": bool(head_only),
        "backbone_dtype": "float16" if half_backbone and not head_only else "float32",
        "backbone_weights": _backbone_weights_note(net) if head_only else WEIGHTS_FILE,
        "num_features": int(net.num_features),
        "dropout": float(net.dropout),
        "preprocess": preprocess.to_dict(),
        "studies": list(net.studies),
        "scaling": scaling,
        "training": meta.pop("training", {}),
        "metrics": meta.pop("metrics", {}),
        **meta,
    }
    _validate(info, target)
    text = json_text(info)
    module = net.head if head_only else net
    prefix = "head." if head_only else ""
    # Copies: safetensors refuses tensors that share memory, and channels_last weights are not contiguous.
    tensors = {prefix + k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}
    if half_backbone and not head_only:
        tensors = {k: v.half() if k.startswith("backbone.") and v.is_floating_point() else v
                   for k, v in tensors.items()}

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / META_FILE).write_text(text + "\n", encoding="utf-8")
        (tmp / CARD_FILE).write_text(card if card is not None else default_card(info), encoding="utf-8")
        for name in (WEIGHTS_FILE, META_FILE, CARD_FILE):
            usual_permissions(tmp / name)
            fsync_file(tmp / name)
        _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def load_package(directory, device="cpu"):
    """-> (PerceptionNet in eval mode on `device`, meta dict from model.json). Strict: every tensor must fit."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from perceptions.nets.perception_net import build_net

    directory = Path(directory)
    meta = read_package_meta(directory)
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise PerceptionsError(f"{directory}: not a model package (no {WEIGHTS_FILE})")
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError) as e:
        raise PerceptionsError(f"{weights_path}: not a readable safetensors file ({e})") from None
    net, _ = build_net(meta["backbone"], meta["studies"], weights="packaged" if meta["head_only"] else "none",
                       dropout=meta["dropout"])
    net.weights = meta["weights"]
    if net.num_features != meta["num_features"]:
        raise PerceptionsError(f"{directory}: backbone {meta['backbone']} gives {net.num_features} features, "
                               f"the package says {meta['num_features']}")
    if meta["head_only"]:
        module, tensors = net.head, {k.removeprefix("head."): v for k, v in tensors.items()}
    else:
        module = net
    expected = module.state_dict()
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape)
    if missing or unexpected or wrong:
        raise PerceptionsError(f"{weights_path}: weights do not fit {meta['backbone']} with "
                               f"{len(meta['studies'])} studies ({len(missing)} missing, {len(unexpected)} "
                               f"unexpected, {len(wrong)} wrong shape; e.g. {(missing + unexpected + wrong)[0]})")
    # A float16 backbone (half_backbone) loads into the float32 net: load_state_dict copies with a cast.
    module.load_state_dict(tensors, strict=True)
    return net.to(device).eval(), meta


def read_package_meta(directory) -> dict:
    """model.json, validated: required keys with the right types and a format this version can read."""
    directory = Path(directory)
    if not directory.is_dir():
        raise PerceptionsError(f"{directory}: no such model folder")
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise PerceptionsError(f"{directory}: not a model package (no {META_FILE})")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PerceptionsError(f"{meta_path}: not valid JSON ({e})") from None
    _validate(meta, meta_path)
    return meta


def preprocess_from_meta(meta: dict) -> Preprocess:
    return Preprocess.from_dict(meta["preprocess"])


def default_card(info: dict) -> str:
    """A short MODEL_CARD.md from the package's own metadata, for callers that pass no card."""
    studies = ", ".join(info["studies"])
    lines = [
        f"# Perception model: {studies}", "",
        f"Predicts how people perceive a street-level image ({studies}) on a 1..10 scale, with deciles "
        "relative to the training images.", "",
        "## Model",
        f"- Backbone: {info['backbone']} (starting weights: {info['weights']}); "
        f"{'head only stored, backbone = packaged weights' if info['head_only'] else 'all weights stored'}",
        f"- Input: {info['preprocess']['input_size']} px, mean {info['preprocess']['mean']}, "
        f"std {info['preprocess']['std']}"
        + (f"; {info['preprocess']['crop_bottom']} px cut off the bottom first"
           if info['preprocess'].get('crop_bottom') else ""),
        f"- Made by perceptions {info['perceptions_version']} on {info['created']}", "",
        "## Training data", "",
    ]
    training = info.get("training") or {}
    lines += [f"- {k}: {v}" for k, v in training.items()] or ["- not recorded"]
    lines += ["", "## Test metrics", ""]
    metrics = info.get("metrics") or {}
    if metrics:
        lines += [f"- {k}: {json_text(v, indent=None)}" for k, v in metrics.items()]
    else:
        lines.append("- not recorded")
    lines += [
        "", "## Intended use and limits", "",
        "For research on urban perception at the scale of many images (streets, neighbourhoods, cities). "
        "Scores reflect the crowd that rated the training images and the places those images show; they are "
        "not facts about a place or its people, and should not drive decisions about individuals. Check the "
        "metrics above before trusting it on images unlike its training data.", "",
    ]
    return "\n".join(lines)


# ---- helpers ------------------------------------------------------------------------------------------------

def _validate(meta, where) -> None:
    if not isinstance(meta, dict):
        raise PerceptionsError(f"{where}: model metadata must be a JSON object")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise PerceptionsError(f"{where}: missing or invalid format_version")
    if version > FORMAT_VERSION:
        raise PerceptionsError(f"{where}: made by a newer perceptions (model format {version}, this version "
                               f"reads up to {FORMAT_VERSION}); upgrade perceptions")
    for key, kind in _REQUIRED.items():
        if key not in meta:
            raise PerceptionsError(f"{where}: model metadata lacks {key!r}")
        value = meta[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise PerceptionsError(f"{where}: {key!r} has the wrong type ({type(value).__name__})")
    # Optional: decile edges fitted on the model's training predictions (predict.inference.PredictionDeciles
    # reads and checks the contents); packages without them use the label edges of "scaling".
    if "prediction_deciles" in meta and not isinstance(meta["prediction_deciles"], dict):
        raise PerceptionsError(f"{where}: 'prediction_deciles' has the wrong type "
                               f"({type(meta['prediction_deciles']).__name__})")
    studies = meta["studies"]
    if not studies or not all(isinstance(s, str) for s in studies):
        raise PerceptionsError(f"{where}: 'studies' must be a non-empty list of study names")
    for s in studies:
        study(s)
    try:
        Preprocess.from_dict(meta["preprocess"])
    except PerceptionsError as e:
        raise PerceptionsError(f"{where}: {e}") from None


def _check_backbone_is_packaged(net) -> None:
    import torch

    from perceptions.nets.backbones import packaged_state_dict, resolve_backbone

    if net.weights != "packaged" or not resolve_backbone(net.backbone_name).packaged:
        raise PerceptionsError(f"head_only needs a backbone with packaged weights; {net.backbone_name} started "
                               f"from {net.weights!r}: save the full weights instead")
    packaged = packaged_state_dict(net.backbone_name)
    for key, value in net.backbone.state_dict().items():
        if key not in packaged or not torch.equal(value.detach().cpu(), packaged[key].to(value.dtype)):
            raise PerceptionsError(f"head_only: the backbone differs from the packaged {net.backbone_name} "
                                   f"weights (at {key}; it was fine-tuned): save the full weights instead")


def _backbone_weights_note(net) -> dict:
    """Which pip package a head-only model's backbone weights come from (informational: load rebuilds them)."""
    from importlib.metadata import PackageNotFoundError, version

    from perceptions.nets.backbones import resolve_backbone

    package = resolve_backbone(net.backbone_name).packaged.replace("_", "-")
    try:
        return {"source": "packaged", "package": package, "version": version(package)}
    except PackageNotFoundError:
        return {"source": "packaged", "package": package}


def _swap_into_place(tmp: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.old"
        os.replace(target, old)
    os.replace(tmp, target)
    fsync_folder(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

