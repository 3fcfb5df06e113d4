"""A convolution applied by hand to a street scene: a Sobel edge filter, then the backbone's own first layer.

    python learning/code/conv_by_hand.py --data /tmp/ch6_ex1/city --out FIGURES

`torch.nn.functional.conv2d` slides a small kernel over the image and, at every position, multiplies the
kernel by the pixels under it and sums (a cross-correlation: the kernel is not flipped, as it would be in a
convolution in the mathematical sense; deep-learning libraries all call this a convolution). The same call
with the 32 filters of EfficientNet-Lite0's first layer (`conv_stem`: 3 x 3 x 3 each, stride 2) gives exactly
what the network computes, once the image is padded the way the TensorFlow-trained weights expect ("SAME"
padding: at stride 2 on an even size, one row and column of zeros at the bottom and right only).

Writes learning_06_conv_by_hand.png: the scene, its Sobel-x, Sobel-y and edge magnitude, and the four stem
filters with the strongest responses, each beside its response map.
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import torch
import torch.nn.functional as F

from city_features import figure_path, load_backbone, run, save_figure

# Sobel (1968): a derivative across one direction, smoothed along the other. SOBEL_X responds to vertical
# edges (brightness changing from left to right), SOBEL_Y to horizontal ones.
SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
SOBEL_Y = SOBEL_X.T.contiguous()
LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R BT.601 weights of R, G, B in brightness


def to_gray(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in 0..1 -> (B, 1, H, W) brightness, itself a 1 x 1 convolution with LUMA."""
    return F.conv2d(rgb, LUMA.view(1, 3, 1, 1))


def convolve(gray: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) -> (B, 1, H, W): one k x k kernel slid over the image. The border is padded by repeating
    the outermost pixels (zeros, conv2d's own padding, would draw a false edge around the frame)."""
    k = kernel.shape[-1]
    p = k // 2
    return F.conv2d(F.pad(gray, (p, p, p, p), mode="replicate"), kernel.view(1, 1, k, k).to(gray.dtype))


def edge_magnitude(gray: torch.Tensor) -> torch.Tensor:
    """Length of the brightness gradient sqrt(gx^2 + gy^2) at every pixel (0 on a flat patch)."""
    return torch.sqrt(convolve(gray, SOBEL_X) ** 2 + convolve(gray, SOBEL_Y) ** 2)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding of one axis, (before, after): the output has ceil(size / stride) positions,
    and when the padding is odd the extra row goes after (PyTorch's padding= is symmetric)."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def stem_by_hand(conv_stem: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The first layer of the backbone computed with F.conv2d: its weights, its stride, SAME padding."""
    weight = conv_stem.weight
    k, s = weight.shape[-1], conv_stem.stride[0]
    top, bottom = same_padding(x.shape[-2], k, s)
    left, right = same_padding(x.shape[-1], k, s)
    return F.conv2d(F.pad(x, (left, right, top, bottom)), weight, stride=s)


def sobel_likeness(weight: torch.Tensor) -> torch.Tensor:
    """(C, 3, 3, 3) filters -> (C, 2): cosine similarity of each filter, summed over colour, with Sobel-x and
    Sobel-y (near +-1: an edge detector of that direction; near 0: something else, e.g. colour contrast)."""
    gray = weight.sum(dim=1).flatten(1)
    sobel = torch.stack([SOBEL_X.flatten(), SOBEL_Y.flatten()])
    return F.normalize(gray, dim=1) @ F.normalize(sobel, dim=1).T


def first_image(data_dir):
    """The city's first image (by file name) drawn by day, where the edges show best; else its first image."""
    from pathlib import Path

    import pandas as pd

    from perceptions.data.placepulse import list_images

    images = list_images(f"{data_dir}/images").sort_values("path")
    truth = Path(data_dir) / "truth.csv"
    if truth.is_file():
        light = pd.read_csv(truth, dtype={"location_id": str}).set_index("location_id")["light"]
        day = images[images["location_id"].astype(str).map(light).eq("day")]
        if len(day):
            return day["path"].iloc[0]
    return images["path"].iloc[0]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a city made by `perceptions synth` (its first image)")
    parser.add_argument("--image", help="this image instead of the city's first one")
    parser.add_argument("--out", required=True, help="folder for the figure")
    parser.add_argument("--overwrite", action="store_true", help="replace a figure that exists")
    args = parser.parse_args(argv)
    from perceptions.data.images import open_rgb

    name = "learning_06_conv_by_hand.png"
    figure_path(args.out, name, args.overwrite)  # refuse before computing anything
    path = args.image or first_image(args.data)
    rgb = torch.from_numpy(np.asarray(open_rgb(path), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    gray = to_gray(rgb)
    gx, gy, mag = convolve(gray, SOBEL_X), convolve(gray, SOBEL_Y), edge_magnitude(gray)
    print(f"image {path}: {tuple(rgb.shape[-2:])} pixels; Sobel-x range {gx.min():.2f}..{gx.max():.2f}; "
          f"edge_density (share of pixels with an edge magnitude above 0.5) {(mag > 0.5).float().mean():.3f}")

    backbone, preprocess = load_backbone()
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (preprocess.mean, preprocess.std))
    x = (rgb - mean) / std                    # the normalisation the weights were trained with
    with torch.no_grad():
        by_hand = stem_by_hand(backbone.conv_stem, x)
        by_net = backbone.conv_stem(x)
    print(f"conv_stem: {tuple(backbone.conv_stem.weight.shape)} weights, stride {backbone.conv_stem.stride[0]}; "
          f"output {tuple(by_net.shape)}; max_abs_difference hand vs net {(by_hand - by_net).abs().max():.2e}")
    likeness = sobel_likeness(backbone.conv_stem.weight.detach())
    best = likeness.abs().max(dim=1).values
    for c in best.argsort(descending=True)[:3].tolist():
        print(f"stem filter {c:2d}: sobel_cosine with Sobel-x {likeness[c, 0]:+.2f}, Sobel-y {likeness[c, 1]:+.2f}")
    # Two of the most edge-like filters and the two others that respond most strongly to this scene.
    edge_like = best.argsort(descending=True)[:2].tolist()
    strongest = [c for c in by_net[0].std(dim=(1, 2)).argsort(descending=True).tolist() if c not in edge_like]
    channels = edge_like + strongest[:2]
    draw(rgb, gx, gy, mag, backbone.conv_stem.weight.detach(), by_net, channels, args.out, name, args.overwrite)


def draw(rgb, gx, gy, mag, weight, response, channels, out, name, overwrite) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 4, figsize=(13, 8.2))
    panels = [(rgb[0].permute(1, 2, 0), "the scene (400 x 300)", None),
              (gx[0, 0], "Sobel-x: vertical edges", "RdBu_r"), (gy[0, 0], "Sobel-y: horizontal edges", "RdBu_r"),
              (mag[0, 0].clamp(max=float(mag.flatten().quantile(0.995))), "edge magnitude sqrt(gx² + gy²)",
               "gray")]
    for ax, (img, title, cmap) in zip(axes[0], panels):
        if cmap == "RdBu_r":
            lim = float(img.abs().flatten().quantile(0.995))  # a few very strong edges would wash the rest out
            ax.imshow(img, cmap=cmap, vmin=-lim, vmax=lim)
        else:
            ax.imshow(img, cmap=cmap)
        ax.set_title(title, fontsize=10)
    for i, c in enumerate(channels):
        w = weight[c].permute(1, 2, 0)
        w = (w - w.min()) / (w.max() - w.min() + 1e-12)
        filt_ax, map_ax = axes[1 + i // 2, 2 * (i % 2)], axes[1 + i // 2, 2 * (i % 2) + 1]
        filt_ax.imshow(w, interpolation="nearest")
        filt_ax.set_title(f"stem filter {c} (3 x 3 x RGB)", fontsize=10)
        lim = float(response[0, c].abs().flatten().quantile(0.995))
        map_ax.imshow(response[0, c], cmap="RdBu_r", vmin=-lim, vmax=lim)
        map_ax.set_title(f"its response, {response.shape[-1]} x {response.shape[-2]} (stride 2)", fontsize=10)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle("A convolution by hand: F.conv2d with a Sobel kernel, and with the backbone's first-layer filters")
    fig.tight_layout()
    save_figure(fig, out, name, overwrite, dpi=90)


if __name__ == "__main__":
    run(main)
