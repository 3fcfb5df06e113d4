"""Feature maps per stage, caught with forward hooks, and the receptive field of each stage.

    python learning/code/feature_maps.py --data /tmp/ch6_ex1/city --out FIGURES

A forward hook is a function PyTorch calls with a module's output every time the module runs: registered on
each stage of the backbone, it keeps that stage's output, so one ordinary forward pass hands back every
intermediate feature map (and the hooks are removed afterwards, so the network is left as it was).

The receptive field of a unit is the patch of input pixels that can influence it. Walking the convolutions in
order, with r the receptive field and j the jump (the input pixels between two neighbouring units, the
product of the strides so far), each k x k convolution of stride s gives r <- r + (k - 1) j, j <- j s
(Araujo et al., "Computing receptive fields of convolutional neural networks", Distill 2019). A skip
connection adds a path with a smaller field, so the largest field is the plain chain's.

Writes learning_06_feature_maps.png: one scene at the shipped 128 px and, for every stage, its size, jump and
receptive field, with the three channels that respond most strongly to the scene.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from torch import nn

from city_features import figure_path, image_tensor, load_backbone, run, save_figure


def stage_modules(backbone: nn.Module) -> dict[str, nn.Module]:
    """EfficientNet's stages in the order they run: the stem (first conv + batch norm + ReLU6), the seven
    stages of blocks, and the 1 x 1 head convolution (+ batch norm + ReLU6) that global pooling averages."""
    stages = {"stem": backbone.bn1}
    stages.update({f"stage{i}": block for i, block in enumerate(backbone.blocks)})
    stages["head_conv"] = backbone.bn2
    return stages


def stage_maps(backbone: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """{stage: its output (B, C, H, W)} for one forward pass, caught by forward hooks (removed again)."""
    maps, handles = {}, []
    for name, module in stage_modules(backbone).items():
        def keep(_module, _inputs, output, name=name):
            maps[name] = output.detach().clone()   # clone: a later in-place ReLU must not change it
        handles.append(module.register_forward_hook(keep))
    try:
        with torch.no_grad():
            backbone(images)
    finally:
        for handle in handles:
            handle.remove()
    return maps


@dataclass(frozen=True)
class Layer:
    name: str
    kernel: int
    stride: int
    dilation: int = 1


def conv_layers(module: nn.Module) -> list[Layer]:
    """The convolutions of a module in the order they run (named_modules follows the order of definition,
    which is the order of the forward pass in EfficientNet's blocks)."""
    return [Layer(name, m.kernel_size[0], m.stride[0], m.dilation[0])
            for name, m in module.named_modules() if isinstance(m, nn.Conv2d)]


def receptive_fields(layers: list[Layer], r: int = 1, j: int = 1) -> list[tuple[Layer, int, int]]:
    """(layer, receptive field r, jump j) after each layer: r <- r + (k - 1) d j, j <- j s."""
    out = []
    for layer in layers:
        r = r + (layer.kernel - 1) * layer.dilation * j
        j = j * layer.stride
        out.append((layer, r, j))
    return out


def stage_receptive_fields(backbone: nn.Module) -> dict[str, tuple[int, int]]:
    """{stage: (receptive field in input pixels, jump)} at the output of each stage of stage_modules."""
    result, r, j = {}, 1, 1
    parts = {"stem": backbone.conv_stem, **{f"stage{i}": b for i, b in enumerate(backbone.blocks)},
             "head_conv": backbone.conv_head}
    for name, module in parts.items():
        fields = receptive_fields(conv_layers(module), r, j)
        if fields:
            _, r, j = fields[-1]
        result[name] = (r, j)
    return result


def gradient_support(backbone: nn.Module, stage: str, size: int = 128) -> tuple[int, int]:
    """(rows, columns) of the input pixels that move the centre unit of `stage`: the receptive field measured
    with a backward pass instead of computed (it can only be smaller, where the image ends or a unit is off)."""
    x = torch.randn(1, 3, size, size, requires_grad=True)
    maps = {}
    module = stage_modules(backbone)[stage]
    handle = module.register_forward_hook(lambda _m, _i, out: maps.__setitem__("out", out))
    try:
        backbone(x)
    finally:
        handle.remove()
    out = maps["out"]
    out[0, :, out.shape[-2] // 2, out.shape[-1] // 2].sum().backward()
    moved = x.grad[0].abs().sum(dim=0) > 0
    rows, cols = moved.any(dim=1).nonzero(), moved.any(dim=0).nonzero()
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a city made by `perceptions synth`")
    parser.add_argument("--image", help="this image instead of the city's first one by day")
    parser.add_argument("--image-size", type=int, default=128, help="input size (the shipped model: 128)")
    parser.add_argument("--out", required=True, help="folder for the figure")
    parser.add_argument("--overwrite", action="store_true", help="replace a figure that exists")
    args = parser.parse_args(argv)
    from conv_by_hand import first_image

    name = "learning_06_feature_maps.png"
    figure_path(args.out, name, args.overwrite)
    backbone, preprocess = load_backbone(args.image_size)
    path = args.image or first_image(args.data)
    x = image_tensor(path, preprocess)
    maps = stage_maps(backbone, x)
    fields = stage_receptive_fields(backbone)
    with torch.no_grad():
        pooled = backbone(x)
    print(f"{path} at {args.image_size} px")
    print(f"{'stage':10s} {'channels':>8s} {'size':>9s} {'jump':>5s} {'receptive_field':>16s}")
    for stage, fmap in maps.items():
        r, j = fields[stage]
        print(f"{stage:10s} {fmap.shape[1]:8d} {fmap.shape[-1]:4d} x {fmap.shape[-2]:<3d} {j:5d} {r:12d} px")
    gap = (maps["head_conv"].mean(dim=(2, 3)) - pooled).abs().max()
    print(f"global average of head_conv equals the pooled features: max_abs_difference {gap:.1e}")
    print(f"measured with a backward pass, the centre unit of stage2 moves "
          f"{'x'.join(map(str, gradient_support(backbone, 'stage2', args.image_size)))} input pixels "
          f"(computed: {fields['stage2'][0]})")
    draw(x, preprocess, maps, fields, args.out, name, args.overwrite)


def draw(x, preprocess, maps, fields, out, name, overwrite) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = list(maps)
    fig, axes = plt.subplots(len(stages), 4, figsize=(8.4, 2.05 * len(stages)))
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in (preprocess.mean, preprocess.std))
    picture = (x[0] * std + mean).clamp(0, 1).permute(1, 2, 0)
    for row, stage in zip(axes, stages):
        fmap = maps[stage][0]
        r, j = fields[stage]
        row[0].imshow(picture)
        row[0].set_title(f"{stage}: {fmap.shape[0]} x {fmap.shape[-2]} x {fmap.shape[-1]}", fontsize=9)
        # The receptive field of the centre unit, drawn on the input (clipped to the picture).
        c = x.shape[-1] / 2
        row[0].add_patch(plt.Rectangle((c - r / 2, c - r / 2), r, r, fill=False, ec="yellow", lw=1.5))
        row[0].text(2, x.shape[-1] - 4, f"jump {j}, field {r} px", color="yellow", fontsize=8)
        for ax, ch in zip(row[1:], fmap.flatten(1).mean(dim=1).argsort(descending=True)[:3].tolist()):
            ax.imshow(fmap[ch], cmap="magma", interpolation="nearest")
            ax.set_title(f"channel {ch}", fontsize=9)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle("Feature maps per stage (forward hooks) and each stage's receptive field", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    save_figure(fig, out, name, overwrite, dpi=90)


if __name__ == "__main__":
    run(main)
