"""`perceptions check`: the data doctor finds one planted problem of each kind, a clean city passes, `--fix`
writes a copy `train` learns from, and a folder that is not Place Pulse-shaped is one line, exit 2."""
from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from perceptions.cli import main

NEW_ID = "abcdefabcdefabcdefabcdef"        # an image nobody scored
ORPHAN_ID = "fedcbafedcbafedcbafedcba"     # a score row without an image
GHOST_ID = "0123456789abcdef01234567"      # a vote naming an image that is not in the folder


def snapshot(folder) -> dict:
    """Every file under `folder` with its content hash and modification time."""
    return {p.relative_to(folder): (hashlib.sha1(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def plant_problems(city) -> dict:
    """One problem of each kind in a copy of the tiny city; returns what was planted where."""
    images = sorted((city / "images").iterdir())
    truncated, grey, doubled, source = images[0], images[1], images[2], images[3]
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    Image.new("RGB", (400, 300), (128, 128, 128)).save(grey, quality=90)
    lat, lon, loc, city_name = doubled.stem.split("_", 3)
    twin = doubled.with_name(f"{float(lat) + 0.001:.6f}_{lon}_{loc}_{city_name}.JPG")
    shutil.copyfile(doubled, twin)
    lat, lon, _, city_name = source.stem.split("_", 3)
    unscored = source.with_name(f"{lat}_{lon}_{NEW_ID}_{city_name}.JPG")
    shutil.copyfile(source, unscored)
    unnamed = city / "images" / "IMG_0001.jpg"
    shutil.copyfile(source, unnamed)

    lines = (city / "qscores.tsv").read_text().splitlines()
    cells = lines[-1].split("\t")
    cells[0], cells[1], cells[2] = str(len(lines) - 1), "f" * 24, ORPHAN_ID
    (city / "qscores.tsv").write_text("\n".join(lines + ["\t".join(cells)]) + "\n")

    votes = (city / "votes.tsv").read_text().splitlines()
    header = votes[0].split("\t")
    left, right, vote_id = header.index("left"), header.index("right"), header.index("_id")
    ghost, self_vote = votes[1].split("\t"), votes[2].split("\t")
    ghost[left], ghost[vote_id] = GHOST_ID, "1" * 24
    self_vote[right], self_vote[vote_id] = self_vote[left], "2" * 24
    again = votes[3].split("\t")
    again[vote_id] = "3" * 24  # saved twice under two ids: still the same vote
    n = len(votes) - 1  # data rows; the first appended one is spreadsheet row n + 2
    (city / "votes.tsv").write_text("\n".join(votes + ["\t".join(c) for c in (ghost, self_vote, again)]) + "\n")
    return {"truncated": truncated, "grey": grey, "doubled": (doubled, twin), "unscored": unscored,
            "unnamed": unnamed, "ghost_row": n + 2, "self_row": n + 3, "again_row": n + 4,
            "self_id": self_vote[left], "again_of": 4}


def test_check_finds_one_of_each_planted_problem(copy_city, tmp_path, capsys):
    city = copy_city()
    planted = plant_problems(city)
    before = snapshot(city)
    out = tmp_path / "problems.csv"
    assert main(["check", str(city), "--out", str(out), "--no-progress"]) == 1
    report = capsys.readouterr().out
    assert report.strip().splitlines()[-2].startswith("verdict: 5 problem(s) would hurt training")

    rows = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(rows.columns) == ["kind", "file", "row", "id", "detail"]
    counts = rows["kind"].value_counts().to_dict()
    assert counts == {"unreadable_image": 1, "placeholder_image": 1, "duplicate_location": 2, "bad_image_name": 1,
                      "image_without_scores": 1, "scores_without_image": 1, "vote_missing_image": 1,
                      "self_vote": 1, "duplicate_vote": 1}

    def only(kind):
        return rows[rows["kind"] == kind].iloc[0]
    assert only("unreadable_image")["file"] == str(planted["truncated"])
    assert "truncated" in only("unreadable_image")["detail"]
    assert only("placeholder_image")["file"] == str(planted["grey"])
    assert "near-uniform" in only("placeholder_image")["detail"]
    assert set(rows.loc[rows["kind"] == "duplicate_location", "file"]) == {str(p) for p in planted["doubled"]}
    assert only("bad_image_name")["file"] == str(planted["unnamed"])
    assert only("image_without_scores")["file"] == str(planted["unscored"])
    assert only("image_without_scores")["id"] == NEW_ID
    assert only("scores_without_image")["id"] == ORPHAN_ID
    assert only("scores_without_image")["file"] == str(city / "qscores.tsv")
    assert (only("vote_missing_image")["row"], only("vote_missing_image")["id"]) == (str(planted["ghost_row"]),
                                                                                      GHOST_ID)
    assert (only("self_vote")["row"], only("self_vote")["id"]) == (str(planted["self_row"]), planted["self_id"])
    assert only("duplicate_vote")["row"] == str(planted["again_row"])
    assert f"as row {planted['again_of']}" in only("duplicate_vote")["detail"]
    assert snapshot(city) == before, "check must never touch the user's folder"


def test_a_clean_city_has_no_problem(tiny_city, capsys):
    assert main(["check", str(tiny_city), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == "verdict: no problem found; ready to train"
    assert "Place Pulse 2.0: about 3.5" in out and "Place Pulse 2.0: 13.4%" in out


def test_fix_writes_a_clean_copy_that_train_learns_from(copy_city, tmp_path, capsys):
    city = copy_city()
    plant_problems(city)
    before = snapshot(city)
    fixed = tmp_path / "fixed"
    assert main(["check", str(city), "--fix", str(fixed), "--no-progress"]) == 1
    assert "cleaned copy ->" in capsys.readouterr().out
    assert snapshot(city) == before, "--fix must never touch the originals"
    links = list((fixed / "images").iterdir())
    assert links and all(p.is_symlink() for p in links)  # no image was copied
    assert len(links) == 48 - 3  # the truncated, the placeholder and the original of the doubled id are out

    assert main(["check", str(fixed), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "verdict: no problem found; ready to train"

    # The fixed folder refuses a second --fix without --overwrite; with it, only its own links are replaced.
    assert main(["check", str(city), "--fix", str(fixed), "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["check", str(city), "--fix", str(fixed), "--overwrite", "--no-progress"]) == 1
    assert snapshot(city) == before

    runs = tmp_path / "runs"
    assert main(["train", "--data", str(fixed), "--epochs", "0", "--freeze-epochs", "1", "--image-size", "32",
                 "--out", str(runs), "--no-progress", "-q"]) == 0
    (run,) = list(runs.iterdir())
    splits = pd.read_csv(run / "splits.csv", dtype=str)
    assert len(splits) == 48 - 3 and (run / "model" / "model.json").is_file()


@pytest.mark.parametrize("make", ["missing", "no_scores", "no_images", "file"])
def test_not_a_place_pulse_folder_is_one_line_exit_2(make, copy_city, tmp_path, capsys):
    target = tmp_path / "nothing"
    if make == "no_scores":
        target = copy_city()
        (target / "qscores.tsv").unlink()
    elif make == "no_images":
        target = copy_city()
        shutil.rmtree(target / "images")
    elif make == "file":
        target.write_text("hello")
    assert main(["check", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("perceptions check: error:") and "\n" not in err
    assert "expected a Place Pulse-format folder" in err


def test_fix_and_out_never_overwrite_without_asking(copy_city, tiny_city, tmp_path, capsys):
    out = tmp_path / "problems.csv"
    out.write_text("mine")
    assert main(["check", str(tiny_city), "--out", str(out)]) == 2
    assert out.read_text() == "mine"
    assert main(["check", str(tiny_city), "--fix", str(tiny_city / "cleaned")]) == 2  # inside the data folder
    other = tmp_path / "other"
    (other / "images").mkdir(parents=True)
    (other / "images" / "real.jpg").write_bytes(b"not a link")
    assert main(["check", str(tiny_city), "--fix", str(other), "--overwrite"]) == 2
    assert (other / "images" / "real.jpg").read_bytes() == b"not a link"
    capsys.readouterr()


def test_placeholder_thresholds_spare_street_scenes(tiny_city):
    """A grey 'no imagery' tile with its icon and text is flagged; real PP2 images and synthetic scenes are not."""
    from pathlib import Path

    from perceptions.data.image_check import placeholder_reason
    from perceptions.data.images import open_rgb

    tile = Image.new("RGB", (400, 300), (228, 227, 223))
    draw = ImageDraw.Draw(tile)
    draw.rectangle((185, 110, 215, 135), fill=(170, 170, 170))
    draw.text((110, 150), "Sorry, we have no imagery here.", fill=(120, 120, 120))
    assert "covers" in placeholder_reason(tile)
    assert "near-uniform" in placeholder_reason(Image.new("RGB", (640, 480), (3, 3, 3)))
    gradient = np.tile(np.linspace(0, 255, 400, dtype=np.uint8)[None, :, None], (300, 1, 3))
    assert placeholder_reason(Image.fromarray(gradient)) == ""
    fixtures = Path(__file__).parent / "fixtures" / "placepulse" / "images"
    for path in [*fixtures.iterdir(), *(tiny_city / "images").iterdir()]:
        assert placeholder_reason(open_rgb(path, min_side=16)) == "", path


def test_train_lists_placeholder_images_it_trains_on(copy_city, tmp_path, caplog):
    """A placeholder in training data is listed (a note and placeholder_images.csv), not silently used."""
    import logging

    city = copy_city()
    grey = sorted((city / "images").iterdir())[5]
    Image.new("RGB", (400, 300), (228, 227, 223)).save(grey, quality=90)
    runs = tmp_path / "runs"
    with caplog.at_level(logging.INFO):
        assert main(["train", "--data", str(city), "--epochs", "0", "--freeze-epochs", "1", "--image-size", "32",
                     "--out", str(runs), "--no-progress"]) == 0
    assert "look like placeholders" in caplog.text and "perceptions check" in caplog.text
    (run,) = list(runs.iterdir())
    listed = pd.read_csv(run / "placeholder_images.csv")
    assert listed["path"].tolist() == [str(grey)] and "near-uniform" in listed["reason"].iloc[0]
