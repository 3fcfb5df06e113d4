"""The scripts of learning/code/ that chapter 6 (learning/06_inside_the_network.md) runs do what the chapter says:
the hand convolution gives the numbers worked out by hand and the backbone's own first layer, the receptive
fields are the hand computation and what a backward pass measures, the hooks return one map per stage with the
shapes of the chapter's table, the ridge is least squares with a penalty chosen without the validation split,
the ten-line loop fits a linear target, and the validation metrics are the ones `perceptions train` logs."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "learning" / "code"))

import city_features as CF  # noqa: E402
import conv_by_hand as C  # noqa: E402
import feature_maps as FM  # noqa: E402
import feature_space as FS  # noqa: E402
import image_stats_baseline as B  # noqa: E402
import own_loop as L  # noqa: E402

from perceptions.errors import PerceptionsError  # noqa: E402

# The chapter's table at 128 px: (channels, size) and (receptive field, jump), computed by hand with
# r <- r + (k - 1) j, j <- j s over conv_stem (3, s2), then the depthwise convolutions of the stages:
# 3 s1 | 3 s2, 3 | 5 s2, 5 | 3 s2, 3, 3 | 5, 5, 5 | 5 s2, 5, 5, 5 | 3; the 1 x 1 convolutions add nothing.
STAGES = {"stem": (32, 64, 3, 2), "stage0": (16, 64, 7, 2), "stage1": (24, 32, 19, 4), "stage2": (40, 16, 67, 8),
          "stage3": (80, 8, 147, 16), "stage4": (112, 8, 339, 16), "stage5": (192, 4, 787, 32),
          "stage6": (320, 4, 851, 32), "head_conv": (1280, 4, 851, 32)}


@pytest.fixture(scope="module")
def backbone():
    net, preprocess = CF.load_backbone()
    assert preprocess.input_size == 128 and preprocess.crop_pct == 1.0
    return net


# ---------------------------------------------------------------------------------------------- conv_by_hand

def test_sobel_on_a_step_edge_gives_the_numbers_worked_out_by_hand():
    # Two dark columns, then three bright ones. Sobel-x at a pixel: (1 x right - 1 x left) over three rows,
    # weighted 1, 2, 1: 4 where the step is under the kernel, 0 elsewhere (the repeated border adds no edge).
    image = torch.tensor([[0.0, 0, 1, 1, 1]] * 5)[None, None]
    gx = C.convolve(image, C.SOBEL_X)[0, 0]
    assert torch.equal(gx, torch.tensor([[0.0, 4, 4, 0, 0]] * 5))
    assert torch.equal(C.convolve(image, C.SOBEL_Y), torch.zeros_like(image))   # no horizontal edge anywhere
    assert torch.equal(C.edge_magnitude(image)[0, 0], gx)
    # Zero padding (conv2d's own) would invent an edge along the frame: the reason convolve repeats the border.
    zero_padded = torch.nn.functional.conv2d(image, C.SOBEL_Y.view(1, 1, 3, 3), padding=1)
    assert zero_padded[0, 0, 0].abs().sum() > 0


def test_brightness_is_a_one_by_one_convolution_with_the_luma_weights():
    rgb = torch.zeros(1, 3, 2, 2)
    rgb[0, 0] = 1.0                                        # pure red
    assert torch.allclose(C.to_gray(rgb), torch.full((1, 1, 2, 2), 0.299))


@pytest.mark.parametrize("size, kernel, stride, pads", [(128, 3, 2, (0, 1)), (127, 3, 2, (1, 1)),
                                                        (300, 3, 2, (0, 1)), (7, 5, 1, (2, 2)),
                                                        (224, 5, 2, (1, 2))])
def test_same_padding_puts_the_odd_row_after(size, kernel, stride, pads):
    assert C.same_padding(size, kernel, stride) == pads
    assert (size + sum(pads) - kernel) // stride + 1 == -(-size // stride)   # ceil(size / stride) outputs


@pytest.mark.parametrize("height, width", [(64, 64), (63, 65), (150, 200)])
def test_the_stem_by_hand_is_what_the_network_computes(backbone, height, width):
    x = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(height))
    with torch.no_grad():
        by_hand, by_net = C.stem_by_hand(backbone.conv_stem, x), backbone.conv_stem(x)
    assert by_hand.shape == by_net.shape == (1, 32, -(-height // 2), -(-width // 2))
    assert torch.allclose(by_hand, by_net, atol=1e-5)
    # PyTorch's symmetric padding=1 is the same on odd sizes (SAME pads one each side) and wrong on even ones
    # (SAME pads only after), shifting every output by one pixel.
    symmetric = torch.nn.functional.conv2d(x, backbone.conv_stem.weight, stride=2, padding=1)
    if height % 2 and width % 2:
        assert torch.allclose(symmetric, by_net, atol=1e-5)
    else:
        assert not torch.allclose(symmetric[..., : by_net.shape[-2], : by_net.shape[-1]], by_net, atol=1e-3)


def test_sobel_likeness_of_a_sobel_filter_and_of_a_flat_one():
    sobel_x = C.SOBEL_X.expand(3, 3, 3)
    flat = torch.ones(3, 3, 3)
    likeness = C.sobel_likeness(torch.stack([sobel_x, -sobel_x.transpose(1, 2), flat]))
    assert torch.allclose(likeness, torch.tensor([[1.0, 0.0], [0.0, -1.0], [0.0, 0.0]]), atol=1e-6)


# ---------------------------------------------------------------------------------------------- feature_maps

def test_receptive_field_formula_by_hand():
    layers = [FM.Layer("a", 3, 1), FM.Layer("b", 3, 2), FM.Layer("c", 3, 1), FM.Layer("d", 1, 1)]
    # r: 1 + 2 = 3; 3 + 2 x 1 = 5 (jump becomes 2); 5 + 2 x 2 = 9; a 1 x 1 layer adds nothing.
    assert [(r, j) for _, r, j in FM.receptive_fields(layers)] == [(3, 1), (5, 2), (9, 2), (9, 2)]
    assert FM.receptive_fields([FM.Layer("dilated", 3, 1, dilation=2)])[0][1:] == (5, 1)


def test_the_backbone_fields_are_the_hand_computation(backbone):
    assert FM.stage_receptive_fields(backbone) == {s: (r, j) for s, (_, _, r, j) in STAGES.items()}


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_a_backward_pass_measures_the_computed_field(backbone, stage):
    _, _, field, _ = STAGES[stage]
    assert FM.gradient_support(backbone, stage, size=96) == (field, field)   # 96 px: room for 67 around the centre


def test_hooks_return_one_map_per_stage_with_the_shapes_of_the_table(backbone):
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    maps = FM.stage_maps(backbone, x)
    assert list(maps) == list(STAGES)
    for stage, (channels, size, _, _) in STAGES.items():
        assert maps[stage].shape == (2, channels, size, size), stage
    assert all(not m._forward_hooks for m in backbone.modules())            # the hooks are gone again
    with torch.no_grad():
        pooled = backbone(x)
    assert torch.allclose(maps["head_conv"].mean(dim=(2, 3)), pooled, atol=1e-5)


# ---------------------------------------------------------------------------------------------- feature_space

def test_pca_finds_a_planted_direction_and_its_share():
    rng = np.random.default_rng(0)
    factor = rng.normal(size=500)
    direction = np.zeros(20)
    direction[3] = 1.0
    x = torch.tensor(np.outer(factor, direction) * 10 + rng.normal(size=(500, 20)) * 0.1, dtype=torch.float32)
    coords, share = FS.pca(x, k=2)
    assert abs(np.corrcoef(coords[:, 0].numpy(), factor)[0, 1]) > 0.999
    assert share[0] > 0.99 and share[1] < 0.01


def test_nearest_neighbours_and_knn_by_cosine():
    pool = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    queries = torch.tensor([[2.0, 0.1], [0.1, 3.0]])
    assert FS.nearest_neighbours(queries, pool, 2).tolist() == [[0, 2], [1, 2]]
    targets = np.array([[1.0], [2.0], [3.0], [np.nan]])
    assert FS.knn_predict(pool, targets, queries, k=2)[:, 0].tolist() == [2.0, 2.5]


# ---------------------------------------------------------------------------------------------- baselines

def test_image_statistics_of_painted_pictures():
    green = np.zeros((40, 60, 3), dtype=np.float32)
    green[..., 1] = 0.6
    s = B.image_statistics(green)
    assert s["greenery"] == 1.0 and s["sky"] == 0.0 and s["edge_density"] == 0.0
    assert s["brightness"] == pytest.approx(0.587 * 0.6)
    sky = np.full((40, 60, 3), 0.2, dtype=np.float32)
    sky[:20] = (0.5, 0.7, 0.95)                            # a day sky over a dark grey street
    s = B.image_statistics(sky)
    assert s["sky"] == 1.0 and s["greenery"] == 0.0
    assert 0 < s["edge_density"] < 0.1                     # the horizon only
    gray = np.full((40, 60, 3), 0.5, dtype=np.float32)
    assert B.image_statistics(gray)["colourfulness"] == pytest.approx(0.0, abs=1e-6)
    # Stripes two pixels wide: every column but the border one sits on a step (a one-pixel checkerboard would
    # give nothing: Sobel's 1-2-1 smoothing cancels it).
    stripes = (np.arange(60) // 2 % 2 * np.ones((40, 1))).astype(np.float32)
    busy = np.repeat(stripes[..., None], 3, axis=2)
    assert B.image_statistics(busy)["edge_density"] > 0.9


@pytest.mark.parametrize("n, p", [(80, 5), (30, 60)])
def test_ridge_is_the_penalised_least_squares_solution(n, p):
    rng = np.random.default_rng(p)
    x, y = rng.normal(size=(n, p)) * rng.uniform(0.5, 3, p), rng.normal(size=(n, 2))
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    for alpha, (w, b) in zip([0.1, 10.0], B.ridge(x, y, [0.1, 10.0])):
        direct = np.linalg.solve(z.T @ z + alpha * np.eye(p), z.T @ (y - y.mean(axis=0)))
        assert np.allclose(w, direct, atol=1e-8) and np.allclose(b, y.mean(axis=0))


def test_cross_validation_picks_a_small_penalty_for_signal_and_a_large_one_for_noise():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5))
    y = np.stack([x @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]), rng.normal(size=200)], axis=1)
    y[:10, 0] = np.nan                                     # unrated rows are left out of that column's fit
    model = B.Ridge().fit(x, y)
    assert model.chosen[0] == min(B.ALPHAS) and model.chosen[1] >= 100
    pred = model.predict(x)
    assert np.allclose(pred[10:, 0], y[10:, 0], atol=1e-2)
    assert np.abs(pred[:, 1] - y[:, 1].mean()).max() < 0.1  # noise: shrunk to the mean


# ---------------------------------------------------------------------------------------------- own_loop

def test_the_ten_line_loop_fits_a_linear_target_and_skips_missing_labels():
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(300, 8)), dtype=torch.float32)
    w = torch.tensor(rng.normal(size=(8, 2)), dtype=torch.float32)
    y = x @ w + 5.5
    y_train = y.clone()
    y_train[:50, 1] = float("nan")
    data = L.FeatureDataset(x[:250], y_train[:250])
    assert len(data) == 250 and [t.shape for t in data[0]] == [(8,), (2,)]
    head, history = L.train_linear_head(data, x[250:], y[250:], epochs=20, batch_size=25, lr=0.1,
                                        weight_decay=0.0)
    assert [h["epoch"] for h in history] == list(range(1, 21))
    assert history[-1]["val_loss"] < 0.01 * history[0]["val_loss"]
    assert torch.allclose(head.weight.detach().T, w, atol=0.05)
    assert np.isfinite(history[-1]["train_loss"])


# ---------------------------------------------------------------------------------------------- city_features

@pytest.fixture(scope="module")
def city_data(tiny_city):
    return CF.city_split(tiny_city, seed=0)


def test_validation_report_is_what_train_logs(city_data):
    from perceptions.train.config import TrainConfig
    from perceptions.train.validation import validation_metrics

    rows = city_data.rows("val")
    pred = np.random.default_rng(0).uniform(0, 11, (len(rows), len(city_data.studies)))  # some outside 1..10
    config = TrainConfig(data="unused", loss="regression")
    logged = validation_metrics(pred, city_data, rows, config)
    ours = CF.validation_report(pred, city_data)
    assert ours["val_spearman"] == pytest.approx(logged["val_spearman"])
    assert ours["val_within1"] == pytest.approx(logged["val_within1"])
    assert {"spearman_truth", "baseline_constant_within_1_decile", "baseline_random_within_1_decile"} <= set(ours)


def test_another_seed_is_what_prepare_data_gives(tiny_city, city_data):
    again = CF.city_split(tiny_city, seed=1)
    moved = CF.with_seed(city_data, 1)
    assert (moved.split == again.split).all() and not (moved.split == city_data.split).all()
    assert np.allclose(moved.targets, again.targets, equal_nan=True)
    assert moved.scaling.to_dict() == again.scaling.to_dict()


def test_the_feature_cache_round_trips_and_names_its_images(tiny_city, city_data, tmp_path):
    cache = CF.build_cache(tiny_city)
    n = len(city_data.table)
    assert cache["features"].shape == (n, 1280) and cache["labels"].shape == (n, 6)
    assert cache["truth"].shape == (n, 6) and len(cache["location_id"]) == n
    loaded = CF.load_cache(CF.save_cache(cache, tmp_path / "features.pt"))
    assert torch.equal(loaded["features"], cache["features"]) and loaded["studies"] == cache["studies"]
    order = CF.rows_of(loaded, city_data)
    assert [loaded["location_id"][i] for i in order] == city_data.table["location_id"].astype(str).tolist()
    loaded["location_id"][0] = "not-an-image"
    with pytest.raises(PerceptionsError, match="no features"):
        CF.rows_of(loaded, city_data)


def test_a_script_refuses_to_replace_a_figure_in_one_line(tiny_city, tmp_path, capsys):
    (tmp_path / "learning_06_conv_by_hand.png").write_bytes(b"mine")
    with pytest.raises(SystemExit) as exit_:
        CF.run(lambda: C.main(["--data", str(tiny_city), "--out", str(tmp_path)]))
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0]
    assert (tmp_path / "learning_06_conv_by_hand.png").read_bytes() == b"mine"
