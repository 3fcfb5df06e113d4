"""Grad-CAM taken apart, for chapter 7: the signed map before the ReLU and the rescaling, Guided Backprop, a
network randomised from the top down, and deletion of the map's cells.

perceptions/predict/explain.py: explain_image draws what `perceptions explain` shows: the `grad-cam` package's
map, with its negative part cut off and rescaled to 0..1 on its own. The functions here compute the same map one
step at a time (`signed_cam`, then `shown_map`), so each step can be questioned; they reuse explain.py's
`find_target_layer` (the last convolutional map) and run the net through the one inference path (`NetForward`).
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from perceptions.predict.explain import find_target_layer
from perceptions.predict.inference import NetForward
from perceptions.predict.pipeline import resolve_precision

# The cascade of Adebayo et al. (2018): re-initialise the network from the top, one more part at each step.
# EfficientNet-Lite0: the head, the last 1x1 convolution, then its seven stages of blocks, then the stem (the
# three lowest stages are re-initialised in one step: what matters is how far down a map keeps its shape).
CASCADE = (("head", ("head.linear",)), ("conv_head", ("backbone.conv_head", "backbone.bn2")),
           *((f"block {k}", (f"backbone.blocks.{k}",)) for k in range(6, 2, -1)),
           ("blocks 2-0", ("backbone.blocks.2", "backbone.blocks.1", "backbone.blocks.0")),
           ("stem", ("backbone.conv_stem", "backbone.bn1")))
GREY = 0.0   # a deleted cell: mid-grey, which is 0 after the model's normalisation (mean = std = 0.5)


def model_input(model, image) -> torch.Tensor:
    """(1, 3, S, S) normalised tensor of an image path or PIL image: exactly what `predict` gives the net."""
    from perceptions.data.images import crop_bottom, open_rgb
    from perceptions.predict.pipeline import pil_to_rgb

    picture = pil_to_rgb(image) if hasattr(image, "size") else open_rgb(image, min_side=model.preprocess.decode_side)
    return model.transform(crop_bottom(picture, model.preprocess.crop_bottom)).unsqueeze(0)


def picture_of(x: torch.Tensor) -> np.ndarray:
    """(S, S, 3) 0..1 picture of a normalised input (mean = std = 0.5): the crop the net saw."""
    return np.clip(x[0].permute(1, 2, 0).detach().cpu().numpy() * 0.5 + 0.5, 0, 1)


def forward_of(net) -> NetForward:
    """The net in fp32 through the one inference path (bf16 gradients are too coarse for a map)."""
    return NetForward(net.eval(), resolve_precision(torch.device("cpu"), "fp32"))


def signed_cam(net, x: torch.Tensor, study: int, input_size: int, layer=None) -> tuple[np.ndarray, float]:
    """(h, w) Grad-CAM map BEFORE its ReLU, and the score: sum over channels c of alpha_c A_c, where A_c is the
    last feature map and alpha_c the mean gradient of the study's output over A_c's positions. Positive cells
    raise the score, negative cells lower it. `layer`: the target layer, when the caller has found it already
    (finding it runs the net once)."""
    cams, scores = signed_cams(net, x, [study], input_size, layer)
    return cams[0], scores[0]


def signed_cams(net, x: torch.Tensor, studies, input_size: int, layer=None) -> tuple[list[np.ndarray], list[float]]:
    """`signed_cam` for several studies from one forward pass (one backward pass each)."""
    layer = layer if layer is not None else find_target_layer(net, input_size)[0]
    seen = {}
    hook = layer.register_forward_hook(lambda module, inputs, output: seen.__setitem__("a", output))
    cams, scores = [], []
    try:
        with torch.enable_grad():
            # The input needs a gradient so that the activations get one (the weights stay as they are).
            out = forward_of(net)(x.clone().requires_grad_(True))[0]
            activation = seen["a"]
            for k, study in enumerate(studies):
                gradient = torch.autograd.grad(out[study], activation, retain_graph=k < len(studies) - 1)[0]
                alpha = gradient.mean(dim=(2, 3), keepdim=True)
                cams.append((alpha * activation).sum(1)[0].detach().cpu().numpy().astype(np.float64))
                scores.append(float(out[study].detach()))
    finally:
        hook.remove()
    return cams, scores


def shown_map(cam: np.ndarray, size: int | None) -> np.ndarray:
    """What `perceptions explain` shows: the positive part, rescaled to 0..1 on its own (min-max, the grad-cam
    package's scale_cam_image) and resized to the input (size None: left as cells): every map with any positive
    cell has a cell at 1."""
    from pytorch_grad_cam.utils.image import scale_cam_image

    return scale_cam_image([np.maximum(cam, 0)], None if size is None else (size, size))[0]


def upsample(cam: np.ndarray, size: int) -> np.ndarray:
    """A cell map resized to size x size as the package resizes it (bilinear), without rescaling."""
    import cv2

    return cv2.resize(np.asarray(cam, dtype=np.float32), (size, size))


class _Guided(torch.autograd.Function):
    """ReLU (or ReLU6) whose backward pass also drops negative gradients: Guided Backpropagation (Springenberg
    et al. 2015), which keeps at every layer only what raises the output."""

    @staticmethod
    def forward(ctx, x, upper):
        ctx.save_for_backward(x)
        ctx.upper = upper
        return x.clamp(0, upper)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ((x > 0) & (x < ctx.upper)) * (grad > 0), None


class GuidedReLU(torch.nn.Module):
    def __init__(self, upper: float = float("inf")):
        super().__init__()
        self.upper = upper

    def forward(self, x):
        return _Guided.apply(x, self.upper)


def guided_copy(net):
    """A copy of the net whose ReLU and ReLU6 activations (EfficientNet-Lite's are all ReLU6) are guided: the
    forward pass and the scores are unchanged, only the backward pass differs."""
    guided = copy.deepcopy(net)
    for parent in list(guided.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.ReLU6):
                setattr(parent, name, GuidedReLU(6.0))
            elif isinstance(child, torch.nn.ReLU):
                setattr(parent, name, GuidedReLU())
    return guided


def guided_backprop(guided, x: torch.Tensor, study: int) -> np.ndarray:
    """(S, S) Guided Backprop saliency: |gradient of the study's output w.r.t. the input|, summed over colour
    channels, through `guided` (a `guided_copy` of the net)."""
    with torch.enable_grad():
        x = x.clone().requires_grad_(True)
        out = forward_of(guided)(x)[0, study]
        gradient = torch.autograd.grad(out, x)[0]
    return gradient.abs().sum(1)[0].cpu().numpy().astype(np.float64)


def randomised(net, steps: int, seed: int = 0):
    """A copy of the net with the first `steps` parts of CASCADE re-initialised (weights drawn anew as at
    construction, batch-norm statistics reset): step 1 the head, step 2 also the last convolution, and so on."""
    copied = copy.deepcopy(net)
    torch.manual_seed(seed)
    for _, names in CASCADE[:steps]:
        for name in names:
            for module in copied.get_submodule(name).modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
                if hasattr(module, "reset_running_stats"):
                    module.reset_running_stats()
    return copied.eval()


def rank_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two maps over their pixels (one of Adebayo et al.'s measures). A blank map (no
    cell raises the score) has no ranks: two blank maps are the same (1), a map that went blank or stopped
    being blank has changed (0)."""
    from perceptions.evaluate.metrics import spearman

    blank_a, blank_b = np.ptp(a) == 0, np.ptp(b) == 0
    if blank_a or blank_b:
        return 1.0 if blank_a and blank_b else 0.0
    return spearman(np.ravel(a), np.ravel(b))


def cells(grid: int, size: int, index: int) -> tuple[slice, slice]:
    """Pixel rows and columns of cell `index` (row-major) of a grid x grid map over a size x size input."""
    r, c = divmod(int(index), grid)
    edges = np.linspace(0, size, grid + 1).round().astype(int)
    return slice(edges[r], edges[r + 1]), slice(edges[c], edges[c + 1])


def deletion_batch(x: torch.Tensor, order, grid: int) -> torch.Tensor:
    """(len(order) + 1, 3, S, S): the input, then with the first 1, 2, ... cells of `order` turned grey."""
    size = x.shape[-1]
    batch = x.repeat(len(order) + 1, 1, 1, 1)
    for k, index in enumerate(order, start=1):
        rows, columns = cells(grid, size, index)
        batch[k:, :, rows, columns] = GREY
    return batch


def deletion_curve(net, x: torch.Tensor, study: int, order, grid: int) -> np.ndarray:
    """The study's score as the cells of `order` are deleted one by one (the first value: nothing deleted)."""
    with torch.inference_mode():
        return forward_of(net)(deletion_batch(x, order, grid))[:, study].double().cpu().numpy()


def target_layer_name(net, input_size: int) -> str:
    """The name of explain.py's target layer in `net`: the same name finds it again in a copy of the net
    (which saves running each copy once to look for it)."""
    layer = find_target_layer(net, input_size)[0]
    return next(name for name, module in net.named_modules() if module is layer)


def deletion_orders(cam: np.ndarray, randoms: int, seed: int = 0) -> dict[str, list]:
    """Cell orders: the map's hottest (most positive) first, its coldest (most negative) first, and random."""
    flat = np.ravel(cam)
    rng = np.random.default_rng(seed)
    return {"hottest first": list(np.argsort(-flat, kind="stable")),
            "coldest first": list(np.argsort(flat, kind="stable")),
            **{f"random {k}": list(rng.permutation(flat.size)) for k in range(randoms)}}


def grid_sizes(net, sizes=(64, 128, 224)) -> dict[int, tuple[int, int]]:
    """Input size -> (h, w) of the last feature map: the resolution of every Grad-CAM map at that size."""
    out = {}
    for size in sizes:
        layer, _ = find_target_layer(net, size)
        seen = {}
        hook = layer.register_forward_hook(lambda m, i, o: seen.__setitem__("shape", tuple(o.shape[-2:])))
        try:
            with torch.inference_mode():
                net.eval()(torch.zeros(1, 3, size, size))
        finally:
            hook.remove()
        out[size] = seen["shape"]
    return out
