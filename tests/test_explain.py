"""Grad-CAM (`perceptions explain`): shape, range, informative maps, crop geometry, the command."""
import numpy as np
import pytest
import torch
from PIL import Image

from perceptions.cli import main
from perceptions.data.images import Preprocess
from perceptions.errors import PerceptionsError
from perceptions.predict.explain import crop_box, explain_image, find_target_layer, paste_map, render_explanation
from perceptions.predict.model import load_model
from predict_helpers import build_tiny_package, street_picture


@pytest.fixture(scope="session")
def package(tmp_path_factory):
    folder = build_tiny_package(tmp_path_factory.mktemp("explain") / "model", seed=1)
    return folder


@pytest.fixture(scope="session")
def model(package):
    model = load_model(package)
    # Trained-ish: a `safe` output that grows with every feature channel, as a head fitted to a study where
    # "more of what the backbone sees" means a higher score; Grad-CAM then has positive evidence to show.
    with torch.no_grad():
        model.net.head.linear.weight[0].abs_()
    return model


@pytest.fixture()
def picture(tmp_path):
    path = tmp_path / "street.png"
    street_picture(5, (96, 72)).save(path)
    return path


def test_heat_map_has_the_image_shape_values_in_0_1_and_is_informative(model, picture):
    expl = explain_image(model, picture, studies="safe")
    heat = expl.heatmaps["safe"]
    assert heat.shape == (72, 96)
    assert heat.dtype == np.float32 and heat.min() >= 0.0 and heat.max() <= 1.0
    left, top, right, bottom = (int(round(v)) for v in expl.crop_box)
    inside = heat[top:bottom, left:right]
    assert inside.std() > 0.01 and inside.max() > 0.9  # not constant: some places matter more
    assert heat[:, : max(left - 1, 0)].max() == 0.0  # outside what the net saw: no evidence
    # the title's score is exactly what `predict` writes for this image
    row = model.predict(str(picture), precision="auto")
    assert expl.scores["safe"] == pytest.approx(row.loc[0, "safe_score"], abs=1e-9)
    assert expl.deciles["safe"] == row.loc[0, "safe_decile"]


def test_all_studies_and_a_grid_picture(model, picture, tmp_path):
    expl = explain_image(model, Image.open(picture), studies="all")
    assert list(expl.heatmaps) == model.studies
    out = render_explanation(expl, tmp_path / "grid.png", title="street")
    with Image.open(out) as img:
        assert img.size[0] > 600  # three panels across
    with pytest.raises(PerceptionsError, match="unknown study"):
        explain_image(model, picture, studies="tasty")


def test_target_layer_is_the_last_spatial_map(model):
    layer, reshape = find_target_layer(model.net, 64)
    assert reshape is None
    seen = []
    handle = layer.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.inference_mode():
        model.net(torch.zeros(1, 3, 64, 64))
    handle.remove()
    assert seen[0][1] == model.net.num_features and seen[0][2] * seen[0][3] > 1


def test_crop_box_matches_resize_then_centre_crop():
    pre = Preprocess(input_size=64, crop_pct=0.875)  # resize shorter side to 73, crop 64
    left, top, right, bottom = crop_box((146, 73), pre)  # resized to 146 x 73: no scaling
    assert (left, top, right, bottom) == (41, 4, 105, 68)
    heat = paste_map(np.ones((64, 64), np.float32), (146, 73), (left, top, right, bottom))
    assert heat.shape == (73, 146) and heat.sum() == 64 * 64


def test_command_writes_a_picture_and_refuses_bad_input(package, picture, tmp_path, capsys):
    out = tmp_path / "heat.png"
    assert main(["explain", str(picture), "--model", str(package), "--study", "safety", "--out", str(out)]) == 0
    assert out.is_file() and "safe" in capsys.readouterr().out
    assert main(["explain", str(picture), "--model", str(package), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["explain", str(tmp_path / "nope.jpg"), "--model", str(package), "--out",
                 str(tmp_path / "h2.png")]) == 2
    assert "no such image" in capsys.readouterr().err
