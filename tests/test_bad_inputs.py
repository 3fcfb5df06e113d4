"""The bad-input corpus (tests/bad_inputs.py) through `perceptions predict` and `perceptions train`: every case is
converted, skipped with a counted report, or refused with one clear line; never a traceback; no valid image lost.
"""
from __future__ import annotations

import json

import pandas as pd
import pytest

from bad_inputs import expected, picture, write_corpus
from perceptions.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    from predict_helpers import build_tiny_package

    return build_tiny_package(tmp_path_factory.mktemp("pkg") / "model")


def test_predict_scores_every_valid_image_and_counts_the_rest(package, tmp_path, capsys):
    folder = tmp_path / "input"
    cases = write_corpus(folder)
    plain = [folder / f"plain_{i}.jpg" for i in range(3)]
    for i, path in enumerate(plain):
        picture(i).save(path, quality=90)
    out = tmp_path / "scores.csv"
    code = main(["predict", str(folder), "--model", str(package), "--out", str(out), "--workers", "0",
                 "--device", "cpu", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err

    scored = pd.read_csv(out)["path"].tolist()
    assert len(scored) == len(set(scored)), "the folder symlink loop must not list an image twice"
    must_score = {str(p) for p in plain} | {str(cases[c].path) for c in expected(cases, "convert")}
    assert set(scored) == must_score
    skipped = set(pd.read_csv(f"{out}.skipped.csv")["path"])
    # A symlink to itself is no file to a folder walk: it is neither scored nor listed (named directly, below).
    walked_skips = {str(cases[c].path) for c in expected(cases, "skip") if c != "symlink_loop"}
    assert skipped == walked_skips
    assert f"{len(walked_skips)} unreadable skipped" in captured.out

    # Each bad file named on the command line: skipped with a count, or (the symlink loop) refused in one line.
    for case in expected(cases, "skip"):
        target = tmp_path / f"{case}.csv"
        code = main(["predict", str(cases[case].path), "--model", str(package), "--out", str(target),
                     "--workers", "0", "--device", "cpu", "--no-progress"])
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err + captured.out
        if case == "symlink_loop":
            assert code == 2 and captured.err.startswith("perceptions predict: error:"), captured.err
            assert captured.err.count("\n") == 1
        else:
            assert code == 0 and "1 unreadable skipped" in captured.out, (case, captured)


def test_train_skips_unreadable_images_with_a_count_and_keeps_every_valid_one(copy_city, tmp_path, capsys):
    city = copy_city()
    originals = iter(sorted((city / "images").glob("*.JPG")))
    stems = {}

    def pp2_name(case: str, ext: str) -> str:
        """The case takes the place of one of the city's images: same location id (it has scores)."""
        original = next(originals)
        original.unlink()
        stems[case] = original.stem
        return original.stem + ext

    cases = write_corpus(city / "images", name_of=pp2_name)
    n_images = 48  # conftest.TINY_CITY
    bad = {str(cases[c].path) for c in expected(cases, "skip")}
    out = tmp_path / "runs"
    code = main(["train", "--data", str(city), "--out", str(out), "--image-size", "32", "--freeze-epochs", "1",
                 "--epochs", "1", "--batch-size", "16", "--loss", "regression", "--workers", "0", "--device",
                 "cpu", "--no-progress", "--seed", "3"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err
    assert f"{len(bad)} unreadable image(s) skipped (listed in skipped_images.csv" in captured.err  # the log
    (run,) = out.iterdir()
    listed = pd.read_csv(run / "skipped_images.csv")
    assert set(listed["path"]) == bad and listed["reason"].str.len().gt(0).all()
    counts = json.loads((run / "config.json").read_text())["data"]
    assert sum(counts.values()) == n_images - len(bad), "every readable image is trained, validated or tested"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["data"]["test"] == counts["test"]
    tested = set(pd.read_csv(run / "test_predictions.csv")["path"])
    assert not tested & bad
