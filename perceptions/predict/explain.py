"""Grad-CAM heat maps: which parts of an image drove a study's score.

Built on the `grad-cam` package (pytorch_grad_cam): the target is one study's output of the regression head,
the target layer the backbone's last feature map (found generically: the last module whose output is a 4-D
map with more than one position). The map is computed on exactly what `predict` sees (the centre crop at the
model's input size) and pasted back onto the whole image, so it has the image's shape; the margins outside
the crop carry no evidence and stay 0.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from perceptions.errors import PerceptionsError
from perceptions.predict.inference import NetForward
from perceptions.predict.model import PerceptionModel, load_model
from perceptions.predict.pipeline import pil_to_rgb, resolve_precision

DISPLAY_MIN_SIDE = 768  # pictures are drawn ~500 px wide: bigger JPEGs are decoded at a reduced scale
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")


class StudyTarget:
    """pytorch_grad_cam target: the (regression) output of one study for one image."""

    def __init__(self, index: int):
        self.index = index

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        return model_output[..., self.index]


def find_target_layer(net: torch.nn.Module, input_size: int):
    """-> (target layer, reshape_transform or None).

    Vision transformers (timm: `blocks` + `patch_embed`): the last block's first norm, its patch tokens
    reshaped to the patch grid. Everything else: the last module (in execution order) whose output is a
    (B, C, H, W) map with H*W > 1, i.e. the last convolutional stage."""
    for module in net.modules():
        if hasattr(module, "blocks") and hasattr(module, "patch_embed") and len(module.blocks):
            return module.blocks[-1].norm1, _token_grid(module)
    device = next(net.parameters()).device
    seen: list[tuple[torch.nn.Module, tuple]] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: seen.append((mod, tuple(out.shape)))
                                     if isinstance(out, torch.Tensor) else None)
             for m in net.modules() if m is not net]
    try:
        with torch.inference_mode():
            net.eval()(torch.zeros(1, 3, input_size, input_size, device=device))
    finally:
        for h in hooks:
            h.remove()
    maps = [m for m, shape in seen if len(shape) == 4 and shape[2] * shape[3] > 1]
    if not maps:
        raise PerceptionsError("Grad-CAM needs a convolutional backbone; this model has no spatial feature map")
    return maps[-1], None


def _token_grid(vit):
    prefix = int(getattr(vit, "num_prefix_tokens", 1))

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, prefix:, :]
        side = int(round(patches.shape[1] ** 0.5))
        return patches.reshape(patches.shape[0], side, -1, patches.shape[2]).permute(0, 3, 1, 2)

    return reshape


@dataclass
class Explanation:
    image: "object"                 # PIL RGB image the maps belong to
    heatmaps: dict[str, np.ndarray]  # study -> (H, W) float32 in [0, 1], the image's shape
    scores: dict[str, float]         # study -> predicted score 1..10 (same as `predict`)
    deciles: dict[str, int]
    crop_box: tuple[float, float, float, float]  # (left, top, right, bottom) of what the net saw, image pixels


@contextmanager
def _frozen(net: torch.nn.Module):
    """Gradients flow to the activations (through the input), not into the weights."""
    flags = [p.requires_grad for p in net.parameters()]
    for p in net.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(net.parameters(), flags):
            p.requires_grad_(flag)


def explain_to_file(image, out, model=None, studies="all", device="cpu", overwrite: bool = False) -> Explanation:
    """`perceptions explain`: Grad-CAM of one image file for `studies`, drawn to the picture `out`.

    model: a package folder, None for the shipped `model/`, or an already loaded PerceptionModel."""
    out = Path(out)
    if out.suffix.lower() not in PICTURE_SUFFIXES:
        raise PerceptionsError(f"{out}: use a .png, .jpg, .pdf or .svg picture")
    if out.exists() and not overwrite:
        raise PerceptionsError(f"{out} already exists (use --overwrite to replace it)")
    if not Path(image).is_file():
        raise PerceptionsError(f"{image}: no such image file")
    if not isinstance(model, PerceptionModel):
        model = load_model(model, device=device)
    explanation = explain_image(model, image, studies=studies)
    render_explanation(explanation, out, title=Path(image).name)
    return explanation


def explain_image(model, image, studies=None) -> Explanation:
    """Grad-CAM of `image` (path or PIL) for `studies` (None / 'all': every study of the model)."""
    from PIL import Image
    from pytorch_grad_cam import GradCAM

    from perceptions.data.images import crop_bottom, open_rgb
    from perceptions.studies import parse_studies

    names = model.studies if studies in (None, "all", ["all"]) else parse_studies(studies)
    missing = [s for s in names if s not in model.studies]
    if missing:
        raise PerceptionsError(f"the model has no {', '.join(missing)} output (it predicts "
                               f"{', '.join(model.studies)})")
    if isinstance(image, Image.Image):
        seen = shown = pil_to_rgb(image)
    else:
        # The net gets what `predict` gives it (big JPEGs decoded at a reduced scale), so the scores match;
        # the picture shown is decoded at a size worth drawing.
        seen = open_rgb(image, min_side=model.preprocess.decode_side)
        shown = open_rgb(image, min_side=DISPLAY_MIN_SIDE)
    # The model's bottom crop (a logo strip) goes first, from the picture shown too, so the map lines up with it;
    # the transform then leaves the already cropped image as it is.
    seen, shown = (crop_bottom(picture, model.preprocess.crop_bottom) for picture in (seen, shown))
    x = model.transform(seen).unsqueeze(0)
    scores = model.score_batch(x, resolve_precision(model.device, "auto"))[0]  # exactly predict's numbers
    decile_row = model.deciles(scores[None, :])[0]
    x = x.to(model.device)
    net = model.net.eval()
    layer, reshape = find_target_layer(net, model.preprocess.input_size)
    # Grad-CAM runs the net through the one inference path too, but in fp32 (bf16 gradients of a regression
    # output are too coarse for a smooth map) and with gradients (so not under inference_mode).
    forward = NetForward(net, resolve_precision(model.device, "fp32"))
    sx, sy = shown.size[0] / seen.size[0], shown.size[1] / seen.size[1]
    left, top, right, bottom = crop_box(seen.size, model.preprocess)
    box = (left * sx, top * sy, right * sx, bottom * sy)
    heatmaps, values, deciles = {}, {}, {}
    with _frozen(net), GradCAM(model=forward, target_layers=[layer], reshape_transform=reshape) as cam:
        cam.compute_input_gradient = True  # BaseCAM's switch (GradCAM's __init__ does not pass it through)
        for name in names:
            j = model.studies.index(name)
            crop_map = cam(input_tensor=x, targets=[StudyTarget(j)])[0]
            heatmaps[name] = paste_map(crop_map, shown.size, box)
            values[name] = float(scores[j])
            deciles[name] = int(decile_row[j])
    return Explanation(shown, heatmaps, values, deciles, box)


def crop_box(size, preprocess) -> tuple[float, float, float, float]:
    """Where the eval transform's centre crop lies in the original image (torchvision's Resize/CenterCrop)."""
    width, height = size
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(preprocess.resize_size * long / short)
    rw, rh = (preprocess.resize_size, new_long) if width <= height else (new_long, preprocess.resize_size)
    s = preprocess.input_size
    top, left = int(round((rh - s) / 2.0)), int(round((rw - s) / 2.0))
    sx, sy = width / rw, height / rh
    return (left * sx, top * sy, (left + s) * sx, (top + s) * sy)


def paste_map(crop_map: np.ndarray, size, box) -> np.ndarray:
    """(s, s) map of the crop -> (H, W) map of the whole image, 0 outside the crop; values in [0, 1]."""
    from PIL import Image

    width, height = size
    left, top, right, bottom = box
    x0, y0 = max(0, int(round(left))), max(0, int(round(top)))
    x1, y1 = min(width, int(round(right))), min(height, int(round(bottom)))
    full = np.zeros((height, width), dtype=np.float32)
    if x1 > x0 and y1 > y0:
        resized = Image.fromarray(np.asarray(crop_map, dtype=np.float32), mode="F").resize(
            (x1 - x0, y1 - y0), Image.Resampling.BILINEAR)
        full[y0:y1, x0:x1] = np.asarray(resized)
    return np.clip(full, 0.0, 1.0)


def render_explanation(expl: Explanation, out, title: str = "", alpha: float = 0.6) -> Path:
    """One panel per study: the image, the heat map over it, the crop the net saw, score and decile above."""
    import math

    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    names = list(expl.heatmaps)
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    width, height = expl.image.size
    panel_w = 4.0
    panel_h = panel_w * height / width + 0.5
    fig = Figure(figsize=(panel_w * ncols, panel_h * nrows + (0.4 if title else 0)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    picture = np.asarray(expl.image)
    left, top, right, bottom = expl.crop_box
    for ax, name in zip(axes, names):
        ax.imshow(picture)
        heat = expl.heatmaps[name]
        # Opacity follows the heat, so the picture stays visible where nothing drove the score.
        overlay = colormaps["jet"](heat)
        overlay[..., 3] = alpha * np.sqrt(heat)
        ax.imshow(overlay)
        ax.add_patch(Rectangle((left, top), right - left, bottom - top, fill=False, ls="--", lw=0.8,
                               ec="white"))
        note = "" if heat.max() > 0 else "\nno region raises this score"
        ax.set_title(f"{name}: {expl.scores[name]:.2f} / 10 (decile {expl.deciles[name]}){note}", fontsize=10)
        ax.set_axis_off()
    for ax in axes[len(names):]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out
