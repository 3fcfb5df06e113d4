"""Panoramas in `perceptions predict`: equirectangular images cut into perspective views (py360convert), with the
orientation checked on a test panorama that has a distinct colour in each 90 degree sector; rows per view and
per panorama, --save-views, skipped blank views, --panorama on/off, and JPEG reduced-size decoding."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from perceptions.cli import main
from perceptions.places.panoramas import PanoramaViews, is_equirectangular, view_name
from perceptions.predict.writers import read_predictions
from perceptions.studies import STUDY_NAMES
from predict_helpers import build_tiny_package, street_picture

# Sector k is centred at longitude 90k (0 = the centre column, growing to the right): red at the centre, green to
# its right, blue behind, yellow to its left.
COLOURS = np.array([(220, 40, 40), (40, 200, 40), (40, 40, 220), (220, 220, 40)])
SIDE = 73  # the tiny package's resize_size (64 / 0.875)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return build_tiny_package(tmp_path_factory.mktemp("pkg") / "model")


def panorama(width=1024, blank_sector=None, seed=0) -> Image.Image:
    """A 2:1 panorama: each 90 degree sector its colour, with texture so no view looks like a placeholder;
    `blank_sector` (0..3) is left flat black, widened to 120 degrees so its view is black edge to edge."""
    height = width // 2
    lon = (np.arange(width) + 0.5) / width * 360 - 180  # degrees; 0 at the centre column
    sector = np.round(lon / 90).astype(int) % 4
    rng = np.random.default_rng(seed)
    blocks = rng.normal(0, 25, (height // 16 + 1, width // 16 + 1, 1)).repeat(16, 0).repeat(16, 1)
    pixels = COLOURS[sector][None, :, :] + blocks[:height, :width]  # coarse texture survives the downscaling
    if blank_sector is not None:
        centre = 90 * blank_sector
        off = np.abs((lon - centre + 180) % 360 - 180) <= 60
        pixels[:, off] = 0
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def nearest_sector(view) -> int:
    mean = np.asarray(view, dtype=float).reshape(-1, 3).mean(axis=0)
    return int(np.argmin(((COLOURS - mean) ** 2).sum(axis=1)))


def predict(package, *args):
    return main(["predict", *map(str, args), "--model", str(package), "--workers", "0", "--no-progress"])


def test_views_follow_the_heading_convention(tmp_path):
    path = tmp_path / "pano.jpg"
    panorama().save(path, quality=92)
    views = PanoramaViews("auto").cut(str(path), SIDE)
    assert [h for h, _, _ in views] == [0.0, 90.0, 180.0, 270.0]
    assert all(v is not None and v.size == (SIDE, SIDE) and not why for _, v, why in views)
    assert [nearest_sector(v) for _, v, _ in views] == [0, 1, 2, 3]  # centre, right, behind, left

    own = PanoramaViews("auto")
    own.set_headings([str(path)], [90])  # the centre column faces east: north is the sector to its left
    shifted = {h: nearest_sector(v) for h, v, _ in own.cut(str(path), SIDE)}
    assert shifted == {90.0: 0, 180.0: 1, 270.0: 2, 0.0: 3}


def test_aspect_rule_and_names():
    assert is_equirectangular(1024, 512) and is_equirectangular(1030, 512)
    assert not is_equirectangular(1050, 512) and not is_equirectangular(800, 600)
    assert view_name("/x/pano.7.jpg", 90.4) == "pano.7_h090.jpg" and view_name("p.jpg", 359.8) == "p_h000.jpg"


def test_predict_gives_view_and_panorama_rows(package, tmp_path):
    (tmp_path / "in").mkdir()
    panorama().save(tmp_path / "in" / "pano.jpg", quality=92)
    street_picture(1).save(tmp_path / "in" / "photo.jpg")  # 4:3, an ordinary image under auto
    out = tmp_path / "pred.csv"
    assert predict(package, tmp_path / "in", "--out", out) == 0
    df = read_predictions(out)
    for column in ("level", "panorama", "view_heading", "n_views"):
        assert column in df.columns
    assert list(df["level"]) == ["view", "view", "view", "view", "panorama", "image"]  # pano.jpg, photo.jpg
    views, pano = df[df["level"] == "view"], df[df["level"] == "panorama"].iloc[0]
    assert list(views["view_heading"]) == [0, 90, 180, 270]
    assert set(views["panorama"]) == {str(tmp_path / "in" / "pano.jpg")} == {pano["path"], pano["panorama"]}
    assert pano["n_views"] == 4 and np.isnan(pano["view_heading"])
    for study in STUDY_NAMES:
        assert pano[f"{study}_score"] == pytest.approx(views[f"{study}_score"].mean(), abs=1e-5)
        assert pano[f"{study}_score_sd"] == pytest.approx(views[f"{study}_score"].std(ddof=1), abs=1e-5)
        assert 1 <= pano[f"{study}_decile"] <= 10
    assert pd.isna(df.loc[5, "panorama"]) and pd.isna(df.loc[5, "n_views"])  # empty for an image

    for choice, levels in (("views", ["view"] * 4 + ["image"]), ("panoramas", ["panorama", "image"])):
        other = tmp_path / f"{choice}.csv"
        assert predict(package, tmp_path / "in", "--out", other, "--panorama-output", choice) == 0
        assert list(read_predictions(other)["level"]) == levels


def test_table_heading_and_saved_views(package, tmp_path):
    panorama().save(tmp_path / "pano.jpg", quality=92)
    table = tmp_path / "meta.csv"
    pd.DataFrame({"filename": ["pano.jpg"], "lat": [48.85], "lon": [2.35], "heading": [90]}).to_csv(table,
                                                                                                  index=False)
    views_dir = tmp_path / "views"
    out = tmp_path / "pred.csv"
    assert predict(package, table, "--out", out, "--save-views", views_dir) == 0
    names = sorted(p.name for p in views_dir.iterdir())
    assert names == ["pano_h000.jpg", "pano_h090.jpg", "pano_h180.jpg", "pano_h270.jpg"]
    assert nearest_sector(Image.open(views_dir / "pano_h090.jpg")) == 0  # the centre column faces heading 90
    assert nearest_sector(Image.open(views_dir / "pano_h000.jpg")) == 3  # north: the sector left of centre
    df = read_predictions(out)
    assert list(df.loc[df["level"] == "view", "view_heading"]) == [90, 180, 270, 0]
    assert df["lat"].tolist() == [48.85] * 5 and df["heading"].tolist() == [90] * 5  # located, carried

    # Saved views are never overwritten without --overwrite.
    assert predict(package, table, "--out", tmp_path / "again.csv", "--save-views", views_dir) == 2
    assert predict(package, table, "--out", tmp_path / "again.csv", "--save-views", views_dir, "--overwrite") == 0


def test_blank_view_is_skipped_with_its_reason(package, tmp_path):
    panorama(blank_sector=2).save(tmp_path / "pano.png")
    out = tmp_path / "pred.csv"
    assert predict(package, tmp_path / "pano.png", "--out", out) == 0
    df = read_predictions(out)
    assert list(df.loc[df["level"] == "view", "view_heading"]) == [0, 90, 270]
    assert df.loc[df["level"] == "panorama", "n_views"].tolist() == [3]
    skipped = pd.read_csv(f"{out}.skipped.csv")
    assert skipped["path"].tolist() == [str(tmp_path / "pano.png")] and skipped["view_heading"].tolist() == [180]
    reason = skipped.loc[0, "reason"]
    assert reason.startswith("view at heading 180: ") and ("uniform" in reason or "one colour" in reason)


def test_panorama_on_and_off(package, tmp_path):
    street_picture(2, size=(120, 90)).save(tmp_path / "photo.jpg")
    panorama(512).save(tmp_path / "pano.jpg")
    out = tmp_path / "on.csv"
    assert predict(package, tmp_path / "photo.jpg", tmp_path / "pano.jpg", "--out", out, "--panorama", "on") == 0
    skipped = pd.read_csv(f"{out}.skipped.csv")
    assert skipped["path"].tolist() == [str(tmp_path / "photo.jpg")]
    assert "not 2:1" in skipped.loc[0, "reason"] and "view_heading" not in skipped.columns
    assert set(read_predictions(out)["level"]) == {"view", "panorama"}

    off = tmp_path / "off.csv"
    assert predict(package, tmp_path / "photo.jpg", tmp_path / "pano.jpg", "--out", off, "--panorama", "off") == 0
    plain = tmp_path / "plain.csv"  # auto with no panorama among the inputs: the columns as before
    assert predict(package, tmp_path / "photo.jpg", "--out", plain) == 0
    for frame in (read_predictions(off), read_predictions(plain)):
        assert "level" not in frame.columns and not any(c.endswith("_sd") for c in frame.columns)
    assert len(read_predictions(off)) == 2


def test_large_panorama_uses_reduced_decoding(tmp_path, monkeypatch):
    import perceptions.data.images as images

    path = tmp_path / "big.jpg"
    panorama(4096).save(path, quality=85)
    decoded = []
    real = images.open_rgb

    def spy(p, *args, **kw):
        image = real(p, *args, **kw)
        decoded.append(image.size)
        return image

    monkeypatch.setattr(images, "open_rgb", spy)
    views = PanoramaViews("auto").cut(str(path), SIDE)
    assert len(decoded) == 1 and decoded[0][0] < 4096 and decoded[0][0] >= 4 * SIDE  # once, at 1/8 or so
    assert [nearest_sector(v) for _, v, _ in views] == [0, 1, 2, 3]
