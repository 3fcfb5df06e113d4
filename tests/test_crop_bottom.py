"""`train --crop-bottom PIXELS`: the strip is cut off before the resize (in the file's own pixels, at any decoding
scale), recorded in the model package so predict cuts the same strip, and a crop taller than an image is one
line, exit 2, at train start (in predict that image is skipped with the reason)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from perceptions.cli import main
from perceptions.data.images import (PLACEPULSE_LOGO_ROWS, Preprocess, augmented_transform, crop_bottom,
                                     eval_transform, open_rgb, train_transform)
from perceptions.errors import PerceptionsError

RED = (255, 0, 0)


def street_with_red_strip(path, size=(800, 600), strip=56):
    """A textured picture whose bottom `strip` rows are pure red (a stand-in for the logo strip); JPEGs without
    chroma subsampling and a strip on a 16-row boundary, so no red bleeds into the rows above."""
    w, h = size
    rng = np.random.default_rng(0)
    pixels = np.zeros((h, w, 3), dtype=np.uint8)
    pixels[..., 1] = rng.integers(60, 200, (h, w))
    pixels[..., 2] = rng.integers(60, 200, (h, w))
    pixels[..., 0] = pixels[..., 1] // 3
    pixels[h - strip:] = RED
    image = Image.fromarray(pixels)
    if str(path).endswith(".png"):
        image.save(path)
    else:
        image.save(path, quality=95, subsampling=0)
    return path


def red_pixels(array) -> int:
    """Pixels that look red in an (H, W, 3) or (3, H, W) uint8 array."""
    a = np.asarray(array)
    if a.shape[0] == 3:
        a = a.transpose(1, 2, 0)
    a = a.astype(int)
    return int(((a[..., 0] > 150) & (a[..., 1] < 90) & (a[..., 2] < 90)).sum())


def test_the_transforms_cut_exactly_the_strip(tmp_path):
    jpeg = street_with_red_strip(tmp_path / "big.jpg")
    pre = Preprocess(input_size=64, crop_pct=1.0, crop_bottom=56)
    decoded = open_rgb(jpeg, min_side=pre.decode_side)
    assert decoded.size == (200, 150)  # decoded at 1/4 scale: the strip is 14 rows there
    assert red_pixels(eval_transform(Preprocess(input_size=64, crop_pct=1.0), normalize=False)(decoded)) > 0
    assert red_pixels(eval_transform(pre, normalize=False)(decoded)) == 0
    assert red_pixels(eval_transform(pre, normalize=False)(open_rgb(jpeg))) == 0  # at full scale too
    for transform in (train_transform(pre), augmented_transform(pre, "flip"), augmented_transform(pre, "none")):
        for _ in range(3):
            x = transform(open_rgb(jpeg, min_side=pre.decode_side))
            # Normalised with mean = std = 0.5: red is (1, -1, -1).
            assert not ((x[0] > 0.2) & (x[1] < -0.3) & (x[2] < -0.3)).any()

    png = street_with_red_strip(tmp_path / "small.png", size=(400, 300), strip=PLACEPULSE_LOGO_ROWS)
    image = open_rgb(png)
    cut = crop_bottom(image, PLACEPULSE_LOGO_ROWS)
    assert cut.size == (400, 300 - PLACEPULSE_LOGO_ROWS) and red_pixels(cut) == 0
    assert red_pixels(crop_bottom(image, PLACEPULSE_LOGO_ROWS - 1)) == 400  # one row short: one red row left
    assert crop_bottom(cut, PLACEPULSE_LOGO_ROWS).size == cut.size  # cut once, however many steps ask
    assert crop_bottom(image, 0) is image


def test_the_logo_strip_of_real_place_pulse_images_is_within_the_documented_rows():
    """The Google logo (white glyphs) lies in the bottom PLACEPULSE_LOGO_ROWS rows of the real PP2 images."""
    from pathlib import Path

    folder = Path(__file__).parent / "fixtures" / "placepulse" / "images"
    for path in sorted(folder.iterdir()):
        pixels = np.asarray(open_rgb(path)).astype(int)
        assert pixels.shape[:2] == (300, 400)
        # White glyph pixels in the logo's corner (bottom left), among the bottom 60 rows (above: sky).
        white = (pixels[240:, 2:62].min(axis=2) > 215).sum(axis=1)
        rows = 240 + np.flatnonzero(white)
        assert rows.min() >= 300 - PLACEPULSE_LOGO_ROWS and rows.max() >= 290, (path.name, rows)


def test_preprocess_round_trip_and_old_packages():
    pre = Preprocess(input_size=128, crop_pct=1.0, crop_bottom=28)
    assert pre.to_dict()["crop_bottom"] == 28 and Preprocess.from_dict(pre.to_dict()) == pre
    old = {k: v for k, v in Preprocess().to_dict().items() if k != "crop_bottom"}
    assert Preprocess.from_dict(old).crop_bottom == 0
    assert pre.decode_side == pre.resize_size + 28 and Preprocess().decode_side == Preprocess().resize_size
    for bad in (-1, 2.5, True, "28"):
        with pytest.raises(PerceptionsError):
            Preprocess(crop_bottom=bad)


def test_crop_bottom_is_a_config_field_and_an_identity_field():
    from perceptions.train.config import IDENTITY_FIELDS, TrainConfig

    assert "crop_bottom" in IDENTITY_FIELDS
    assert TrainConfig(data="x").crop_bottom == 0
    with pytest.raises(PerceptionsError):
        TrainConfig(data="x", crop_bottom=-3)


def test_a_crop_taller_than_the_images_stops_training_with_one_line(tiny_city, tmp_path, capsys):
    out = tmp_path / "runs"
    code = main(["train", "--data", str(tiny_city), "--crop-bottom", "300", "--image-size", "32", "--epochs", "0",
                 "--freeze-epochs", "1", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err
    assert err.startswith("perceptions train: error: --crop-bottom 300 is too large:") and "300 px high" in err
    assert not out.exists() or not any(out.iterdir())


def test_the_package_records_the_crop_and_predict_applies_it(tiny_city, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["train", "--data", str(tiny_city), "--crop-bottom", str(PLACEPULSE_LOGO_ROWS), "--image-size",
                 "32", "--epochs", "0", "--freeze-epochs", "1", "--out", str(out), "--no-progress", "-q"]) == 0
    (run,) = list(out.iterdir())
    meta = json.loads((run / "model" / "model.json").read_text())
    assert meta["preprocess"]["crop_bottom"] == PLACEPULSE_LOGO_ROWS

    from perceptions.predict.model import load_model

    model = load_model(run / "model", device="cpu")
    assert model.preprocess.crop_bottom == PLACEPULSE_LOGO_ROWS
    red = street_with_red_strip(tmp_path / "red.png", size=(400, 300), strip=PLACEPULSE_LOGO_ROWS)
    blue = np.asarray(Image.open(red)).copy()
    blue[300 - PLACEPULSE_LOGO_ROWS:] = (0, 0, 255)
    Image.fromarray(blue).save(tmp_path / "blue.png")
    short = tmp_path / "short.jpg"
    Image.new("RGB", (60, 20), (90, 120, 90)).save(short)
    df = model.predict([str(red), str(tmp_path / "blue.png"), str(short)])
    capsys.readouterr()
    assert df["path"].tolist() == [str(red), str(tmp_path / "blue.png")]
    (reason,) = df.attrs["skipped"]["reason"]
    assert "20 px high" in reason and "--crop-bottom" in reason
    # The strip is cut before the net sees the picture: whatever it holds, the scores are the same.
    scores = df.filter(like="_score").to_numpy()
    assert np.isfinite(scores).all() and (scores[0] == scores[1]).all()
