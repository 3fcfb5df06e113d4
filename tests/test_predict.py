"""`perceptions predict` and the notebook API: rows, order, odd images, outputs, resume, bad input."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import perceptions
from perceptions.cli import main
from perceptions.errors import PerceptionsError
from perceptions.predict.job import predict_to_file
from perceptions.predict.model import PerceptionModel, load_model
from perceptions.predict.pipeline import predict_paths, resolve_precision
from perceptions.predict.writers import read_predictions
from perceptions.studies import STUDY_NAMES
from predict_helpers import build_tiny_package, street_picture, write_pictures

SCORE_COLUMNS = [f"{s}_score" for s in STUDY_NAMES]
DECILE_COLUMNS = [f"{s}_decile" for s in STUDY_NAMES]


@pytest.fixture(scope="session")
def package(tmp_path_factory):
    return build_tiny_package(tmp_path_factory.mktemp("pkg") / "model")


@pytest.fixture(scope="session")
def model(package):
    return load_model(package)


@pytest.fixture(scope="session")
def pictures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pictures")
    return write_pictures(folder / "city", 12) + write_pictures(folder / "phone", 3, pp2_names=False, start=50)


def _fp32(model, paths, **kw):
    return predict_paths(model, paths, progress=False, precision="fp32", **kw)


def test_rows_columns_and_input_order(model, pictures):
    order = pictures[::-1]
    df, skipped = predict_paths(model, order, batch_size=4, num_workers=0, progress=False)
    assert skipped.empty
    assert list(df.columns) == ["path", "lat", "lon", "location_id", "city"] + SCORE_COLUMNS + DECILE_COLUMNS
    assert list(df["path"]) == order
    located = df[df["city"] != ""]
    assert len(located) == 12 and set(located["city"]) == {"Boston", "Paris"}
    assert located["lat"].between(42, 49).all() and located["location_id"].str.len().eq(24).all()
    phone = df[df["path"].str.contains("photo_")]
    assert phone["lat"].isna().all() and (phone["location_id"] == "").all() and (phone["city"] == "").all()
    scores = df[SCORE_COLUMNS].to_numpy()
    assert np.isfinite(scores).all() and scores.min() >= 1 and scores.max() <= 10
    assert df[SCORE_COLUMNS].std().gt(0).all()  # images differ, so do scores
    deciles = df[DECILE_COLUMNS].to_numpy()
    assert deciles.dtype.kind == "i" and deciles.min() >= 1 and deciles.max() <= 10
    for s in STUDY_NAMES:  # deciles follow the package's scaling
        assert list(df[f"{s}_decile"]) == list(model.scaling.decile(df[f"{s}_score"].to_numpy(), s))


def test_batching_and_workers_do_not_change_results(model, pictures):
    one_batch, _ = _fp32(model, pictures, batch_size=64, num_workers=0)
    workers, _ = _fp32(model, pictures, batch_size=4, num_workers=2)
    pd.testing.assert_frame_equal(one_batch, workers)


def test_batch_normalisation_gives_the_per_image_transform_scores(model, pictures):
    """predict normalises uint8 batches in score_batch; explain and users normalise each image with
    model.transform: the scores must be the same numbers."""
    import torch

    from perceptions.data.images import open_rgb

    df, _ = _fp32(model, pictures, batch_size=8, num_workers=0)
    images = torch.stack([model.transform(open_rgb(p, min_side=model.preprocess.resize_size)) for p in pictures])
    expected = model.score_batch(images, resolve_precision(model.device, "fp32"))
    assert np.array_equal(df[SCORE_COLUMNS].to_numpy(), expected)


def test_bf16_backbone_stays_close_to_fp32(model, pictures):
    exact, _ = _fp32(model, pictures[:6], num_workers=0)
    fast, _ = predict_paths(model, pictures[:6], num_workers=0, progress=False, precision="bf16")
    assert np.abs(exact[SCORE_COLUMNS].to_numpy() - fast[SCORE_COLUMNS].to_numpy()).max() < 0.5


def test_odd_images_are_converted_rotated_resized_or_skipped(model, tmp_path):
    base = street_picture(7, (90, 60))
    rgb = np.asarray(base)
    files = {}
    # PNG with alpha: flattened on white, like the same picture saved flat.
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.where(np.arange(90)[None, :] < 45, 0, 255).repeat(60, 0).astype(np.uint8)))
    rgba.save(files.setdefault("alpha", tmp_path / "alpha.png"))
    flat = Image.new("RGB", base.size, (255, 255, 255))
    flat.paste(rgba, mask=rgba.getchannel("A"))
    flat.save(files.setdefault("alpha_flat", tmp_path / "alpha_flat.png"))
    # EXIF orientation 6 (rotate 90 degrees clockwise to view): must score as the upright picture.
    exif = Image.Exif()
    exif[0x0112] = 6
    base.save(files.setdefault("exif", tmp_path / "exif.png"), exif=exif)
    base.transpose(Image.Transpose.ROTATE_270).save(files.setdefault("upright", tmp_path / "upright.png"))
    base.save(files.setdefault("sideways", tmp_path / "sideways.png"))
    base.convert("L").save(files.setdefault("gray", tmp_path / "gray.jpg"))
    base.convert("CMYK").save(files.setdefault("cmyk", tmp_path / "cmyk.jpg"))
    # 12,000 x 9,000 (108 MP, over PIL's warning limit): decoded at a reduced scale and scored.
    Image.new("L", (12000, 9000), 128).save(files.setdefault("huge", tmp_path / "huge.jpg"), quality=30)
    good = tmp_path / "good.jpg"
    Image.fromarray(rgb).save(good)
    data = good.read_bytes()
    (files.setdefault("truncated", tmp_path / "truncated.jpg")).write_bytes(data[: len(data) // 2])
    (files.setdefault("garbage", tmp_path / "garbage.jpg")).write_bytes(b"this is not a jpeg" * 20)
    (files.setdefault("empty", tmp_path / "empty.png")).write_bytes(b"")
    files["missing"] = tmp_path / "missing.jpg"

    paths = [str(p) for p in files.values()]
    df, skipped = _fp32(model, paths, batch_size=3, num_workers=0)
    by_name = df.set_index(df["path"].map(lambda p: p.rsplit("/", 1)[-1].split(".")[0]))
    assert set(by_name.index) == {"alpha", "alpha_flat", "exif", "upright", "sideways", "gray", "cmyk",
                                  "huge"}
    assert np.allclose(by_name.loc["alpha", SCORE_COLUMNS], by_name.loc["alpha_flat", SCORE_COLUMNS])
    assert np.allclose(by_name.loc["exif", SCORE_COLUMNS], by_name.loc["upright", SCORE_COLUMNS])
    assert not np.allclose(by_name.loc["exif", SCORE_COLUMNS], by_name.loc["sideways", SCORE_COLUMNS])
    assert list(skipped["path"]) == [str(files[k]) for k in ("truncated", "garbage", "empty", "missing")]
    reasons = dict(zip(skipped["path"], skipped["reason"]))
    assert "truncated" in reasons[str(files["truncated"])] and "no such file" in reasons[str(files["missing"])]


def test_notebook_api(package, pictures):
    model = perceptions.load_model(package)
    one = model.predict(street_picture(3))
    assert len(one) == 1 and one.loc[0, "path"] == "" and 1 <= one.loc[0, "safe_score"] <= 10
    mixed = model.predict([pictures[0], Image.open(pictures[1]), "nowhere.jpg"])
    assert list(mixed["path"]) == [pictures[0], ""] and list(mixed.attrs["skipped"]["path"]) == ["nowhere.jpg"]
    assert "efficientnet_lite0" in repr(model)


def test_missing_and_newer_models_are_one_clear_line(package, tmp_path, monkeypatch):
    import perceptions.predict.model as model_module

    monkeypatch.setattr(model_module, "DEFAULT_MODEL_DIR", tmp_path / "model")
    with pytest.raises(PerceptionsError, match="no model package in .*perceptions train"):
        perceptions.load_model()
    newer = tmp_path / "newer"
    shutil.copytree(package, newer)
    meta = json.loads((newer / "model.json").read_text())
    meta["format_version"] += 1
    (newer / "model.json").write_text(json.dumps(meta))
    with pytest.raises(PerceptionsError, match="newer"):
        load_model(newer)


def _cli(*args):
    return main(["predict", *map(str, args), "--workers", "0", "--no-progress"])


def test_command_writes_every_format_and_refuses_to_overwrite(package, pictures, tmp_path, capsys):
    folder = pictures[0].rsplit("/", 2)[0]
    bad = tmp_path / "in" / "bad.jpg"
    bad.parent.mkdir()
    bad.write_bytes(b"nope")
    out = tmp_path / "p.csv"
    assert _cli(folder, bad, "--model", package, "--out", out) == 0
    line = capsys.readouterr().out
    assert "wrote 15 rows" in line and "1 unreadable skipped" in line
    table = pd.read_csv(out)
    assert len(table) == 15 and table[SCORE_COLUMNS].notna().all().all()
    assert pd.read_csv(f"{out}.skipped.csv")["path"].tolist() == [str(bad)]
    assert _cli(folder, "--model", package, "--out", out) == 2
    assert "already exists" in capsys.readouterr().err
    assert _cli(folder, "--model", package, "--out", out, "--overwrite") == 0
    assert not (tmp_path / "p.csv.skipped.csv").exists()  # the stale list of the earlier run went with it
    for suffix in (".parquet", ".geojson"):
        assert _cli(folder, "--model", package, "--out", tmp_path / f"p{suffix}") == 0
    geo = json.loads((tmp_path / "p.geojson").read_text())
    assert len(geo["features"]) == 12  # the 3 phone photos have no coordinates
    lon, lat = geo["features"][0]["geometry"]["coordinates"]
    assert -72 < lon < 3 and 42 < lat < 49
    assert set(geo["features"][0]["properties"]) >= {"path", "city", "safe_score", "safe_decile"}
    parquet = read_predictions(tmp_path / "p.parquet")
    assert list(parquet["path"]) == list(table["path"])


@pytest.mark.parametrize("case, expected", [
    ("missing_input", "no such file or folder"),
    ("no_images", "no images found"),
    ("missing_model", "does not exist"),
    ("bad_suffix", "unknown output format"),
])
def test_command_bad_input_is_one_line_and_exit_2(package, pictures, tmp_path, capsys, case, expected):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = {"missing_input": [tmp_path / "nope", "--model", package],
            "no_images": [empty, "--model", package],
            "missing_model": [pictures[0], "--model", tmp_path / "nomodel"],
            "bad_suffix": [pictures[0], "--model", package, "--out", tmp_path / "p.xlsx"]}[case]
    if "--out" not in args:
        args += ["--out", tmp_path / "p.csv"]
    assert _cli(*args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("perceptions predict: error:") and expected in err and "\n" not in err


def test_killed_run_resumes_to_the_same_file(model, pictures, tmp_path, monkeypatch):
    full = tmp_path / "full.csv"
    predict_to_file(pictures, full, model=model, batch_size=4, num_workers=0, precision="fp32", progress=False)

    out = tmp_path / "part.csv"
    real, calls = PerceptionModel.score_batch, []

    def dies_on_third_batch(self, batch, precision):
        calls.append(len(batch))
        if len(calls) == 3:
            raise KeyboardInterrupt  # what a kill looks like from inside
        return real(self, batch, precision)

    monkeypatch.setattr(PerceptionModel, "score_batch", dies_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        predict_to_file(pictures, out, model=model, batch_size=4, num_workers=0, precision="fp32", progress=False)
    monkeypatch.setattr(PerceptionModel, "score_batch", real)
    part = tmp_path / "part.csv.part-0.csv"
    assert not out.exists() and len(pd.read_csv(part)) == 8  # two batches survived
    with open(part, "a") as f:
        f.write(pictures[9] + ",42.3")  # a line cut short by the kill
    with pytest.raises(PerceptionsError, match="--resume"):
        predict_to_file(pictures, out, model=model, num_workers=0, progress=False)
    summary = predict_to_file(pictures, out, model=model, batch_size=4, num_workers=0, precision="fp32",
                              progress=False, resume=True)
    assert summary["already_done"] == 8 and summary["scored_now"] == 7
    assert out.read_bytes() == full.read_bytes()
    assert not part.exists()
    # Resuming a finished run with one more image scores just that one.
    extra = write_pictures(tmp_path / "more", 1, start=99)
    summary = predict_to_file(pictures + extra, out, model=model, num_workers=0, progress=False, resume=True)
    assert summary["scored_now"] == 1 and len(pd.read_csv(out)) == 16
