"""The synthetic city: PP2 formats read back by the project's own readers, determinism, bad input, and
whether the scenes show what the truth says."""
import hashlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.stats import spearmanr

from perceptions.cli import main
from perceptions.data.placepulse import list_images, read_qscores, read_votes
from perceptions.data.scoring import score_votes
from perceptions.data.synthetic import (ATTRIBUTES, generate_city, raw_perceptions, sample_places,
                                        simulate_votes, true_perceptions)
from perceptions.data.synthetic_preview import write_contact_sheet
from perceptions.data.synthetic_scene import draw_scene
from perceptions.errors import PerceptionsError
from perceptions.studies import STUDY_NAMES, study

N, CITIES, VOTES, SEED = 40, 2, 4, 3


def _hashes(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    out = tmp_path_factory.mktemp("city") / "synth"
    summary = generate_city(out, n_images=N, n_cities=CITIES, votes_per_image=VOTES, seed=SEED)
    return out, summary


def test_images_are_pp2_named_400x300_jpegs_matching_truth(city):
    out, _ = city
    images = list_images(out / "images")
    truth = pd.read_csv(out / "truth.csv", dtype={"location_id": str})
    assert len(images) == N
    assert images["location_id"].str.fullmatch(r"[0-9a-f]{24}").all()
    assert images["location_id"].is_unique
    merged = images.merge(truth, on="location_id", suffixes=("", "_truth"))
    assert len(merged) == N
    assert (merged["city"] == merged["city_truth"]).all()
    assert np.allclose(merged["lat"], merged["lat_truth"]) and np.allclose(merged["lon"], merged["lon_truth"])
    assert set(truth["city"]) == {"Alderbrook", "Brickport"}
    with Image.open(images["path"].iloc[0]) as scene:
        assert scene.format == "JPEG" and scene.size == (400, 300) and scene.mode == "RGB"


def test_truth_has_attributes_and_one_column_per_study(city):
    out, _ = city
    truth = pd.read_csv(out / "truth.csv", dtype={"location_id": str})
    for col in ("location_id", "city", "lat", "lon", "light", *ATTRIBUTES, *STUDY_NAMES):
        assert col in truth.columns
    assert truth[list(ATTRIBUTES)].stack().between(0, 1).all()
    assert set(truth["light"]) <= {"day", "dusk", "night", "fog"}
    # The truth is the documented function of the attributes plus a little idiosyncratic noise.
    fitted = raw_perceptions(truth)
    for name in STUDY_NAMES:
        assert np.corrcoef(fitted[name], truth[name])[0, 1] > 0.9


def test_votes_are_a_site_export_read_back_by_the_reader(city):
    out, summary = city
    header = (out / "votes.tsv").read_text().splitlines()[0].split("\t")
    assert header == ["_id", "choice", "left", "right", "study_id", "timestamp", "voter_uniqueid"]
    votes = read_votes(out / "votes.tsv")
    assert list(pd.unique(votes["study"].sort_values())) == sorted(STUDY_NAMES)
    assert votes.groupby("study").size().eq(N * VOTES // 2).all()
    assert set(votes["choice"]) <= {"left", "right", "equal"}
    assert (votes["left"] != votes["right"]).all()
    assert votes["timestamp"].is_monotonic_increasing
    ids = set(pd.read_csv(out / "truth.csv", dtype={"location_id": str})["location_id"])
    assert set(votes["left"]) | set(votes["right"]) == ids
    # every image is compared VOTES times in every study
    counts = pd.concat([votes[["study", "left"]].rename(columns={"left": "id"}),
                        votes[["study", "right"]].rename(columns={"right": "id"})]).value_counts()
    assert (counts == VOTES).all()
    assert summary["votes"] == len(votes)


def test_qscores_rank_the_images_as_the_truth_does_and_a_shuffled_truth_does_not(city):
    out, summary = city
    qscores = read_qscores(out / "qscores.tsv")
    assert len(qscores) == N * len(STUDY_NAMES)
    assert set(qscores["study"]) == set(STUDY_NAMES)
    truth = pd.read_csv(out / "truth.csv", dtype={"location_id": str})
    rng = np.random.default_rng(0)
    real, shuffled = [], []
    for name in STUDY_NAMES:
        both = qscores[qscores["study"] == name].merge(truth[["location_id", name]], on="location_id")
        assert len(both) == N
        real.append(spearmanr(both["trueskill.score"], both[name])[0])
        # control: the same scores against the truth dealt to the images at random
        shuffled.append(spearmanr(both["trueskill.score"], rng.permutation(both[name].to_numpy()))[0])
        assert summary["spearman_trueskill_truth"][name] == pytest.approx(real[-1], abs=1e-4)
    # 4 votes per image are enough for the labels to follow the truth (0.73..0.87 here) ...
    assert min(real) > 0.5 and np.mean(real) > 0.7, real
    # ... and only through the images: a shuffled truth gives about 0 (sd ~0.16 per study, ~0.065 averaged)
    assert abs(np.mean(shuffled)) < 0.25 and max(np.abs(shuffled)) < 0.6, shuffled


def test_same_arguments_give_identical_files_and_another_seed_differs(city, tmp_path):
    out, _ = city
    generate_city(tmp_path / "again", n_images=N, n_cities=CITIES, votes_per_image=VOTES, seed=SEED)
    assert _hashes(tmp_path / "again") == _hashes(out)
    generate_city(tmp_path / "other", n_images=N, n_cities=CITIES, votes_per_image=VOTES, seed=SEED + 1)
    other = _hashes(tmp_path / "other")
    assert other["votes.tsv"] != _hashes(out)["votes.tsv"]
    assert set(other) != set(_hashes(out))  # other location ids, so other image names


@pytest.mark.parametrize("kwargs, words", [
    ({"n_images": 0}, "--images"),
    ({"n_images": 1}, "--images"),
    ({"votes_per_image": -1}, "--votes-per-image"),
    ({"votes_per_image": 0}, "--votes-per-image"),
    ({"n_cities": 0}, "--cities"),
    ({"n_images": 3, "n_cities": 5}, "--cities"),
    ({"seed": -2}, "--seed"),
    ({"crowd_noise": -0.5}, "--crowd-noise"),
])
def test_nonsense_arguments_are_refused(tmp_path, kwargs, words):
    args = {"n_images": 4, "n_cities": 1, "votes_per_image": 2, "seed": 0, **kwargs}
    with pytest.raises(PerceptionsError, match=words):
        generate_city(tmp_path / "x", **args)
    assert not (tmp_path / "x").exists()


def test_cli_refuses_a_non_empty_folder_without_overwrite(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    code = main(["synth", "--out", str(tmp_path), "--images", "4", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("perceptions synth: error:") and "--overwrite" in err and "\n" not in err
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    assert not (tmp_path / "images").exists()


def test_cli_bad_numbers_exit_2_with_one_line(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "c"), "--images", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--images" in err


def test_overwrite_replaces_an_earlier_city_and_keeps_other_files(tmp_path, capsys):
    out = tmp_path / "c"
    preview = tmp_path / "sheet.png"
    assert main(["synth", "--out", str(out), "--images", "12", "--cities", "2", "--votes-per-image", "2",
                 "--no-progress"]) == 0
    (out / "notes.txt").write_text("mine")
    assert main(["synth", "--out", str(out), "--images", "6", "--cities", "1", "--votes-per-image", "2",
                 "--overwrite", "--no-progress", "--preview", str(preview)]) == 0
    assert "Spearman" in capsys.readouterr().out
    assert len(list_images(out / "images")) == 6
    assert len(pd.read_csv(out / "truth.csv")) == 6
    assert (out / "notes.txt").read_text() == "mine"
    with Image.open(preview) as sheet:
        assert sheet.size[0] >= 4 * 320 - 1 and sheet.size[1] > 240


def test_overwrite_never_touches_a_folder_of_other_images(tmp_path):
    real = tmp_path / "pp2" / "images" / "42.3_-71.0_513d67a9fdc9f03587004128_Boston.JPG"
    real.parent.mkdir(parents=True)
    real.write_bytes(b"a real photo")
    with pytest.raises(PerceptionsError, match="not a synthetic city"):
        generate_city(tmp_path / "pp2", n_images=4, n_cities=1, votes_per_image=2, overwrite=True)
    assert real.read_bytes() == b"a real photo"
    # A synthetic city with a hand-placed image in it: --overwrite replaces only what synth wrote.
    generate_city(tmp_path / "c", n_images=4, n_cities=1, votes_per_image=2)
    mine = tmp_path / "c" / "images" / real.name
    mine.write_bytes(b"a real photo")
    generate_city(tmp_path / "c", n_images=3, n_cities=1, votes_per_image=2, seed=9, overwrite=True)
    assert mine.read_bytes() == b"a real photo"
    assert len(list_images(tmp_path / "c" / "images")) == 3 + 1


def test_contact_sheet_needs_a_synthetic_city(tmp_path):
    with pytest.raises(PerceptionsError, match="truth.csv"):
        write_contact_sheet(tmp_path, tmp_path / "s.png")


def _votes_for(truth, **kwargs):
    ids = [f"{i:024x}" for i in range(len(truth))]
    votes = simulate_votes(ids, truth, votes_per_image=6, seed=0, **kwargs)
    return ids, votes.assign(study=votes["study_id"].map(lambda s: study(s).name))


def test_crowd_ties_about_13_percent_and_trueskill_recovers_truth():
    places = sample_places(600, 4, seed=5)
    truth = true_perceptions(places, seed=5)
    ids, votes = _votes_for(truth)
    assert 0.10 < (votes["choice"] == "equal").mean() < 0.16
    scores = score_votes(votes, "trueskill")
    truth = truth.assign(location_id=ids)
    for name in STUDY_NAMES:
        s = scores[scores["study"] == name].merge(truth, on="location_id")
        rho = spearmanr(s["trueskill.score"], s[name])[0]
        assert 0.6 < rho < 0.97  # informative, yet noisy like a crowd


def test_more_crowd_noise_means_more_wrong_votes():
    truth = true_perceptions(sample_places(400, 2, seed=1), seed=1)

    def agreement(noise):
        ids, votes = _votes_for(truth, crowd_noise=noise, careless_share=0.0)
        t = truth.assign(location_id=ids).set_index("location_id")["safe"]
        v = votes[(votes["study"] == "safe") & (votes["choice"] != "equal")]
        return np.mean((t[v["left"]].to_numpy() > t[v["right"]].to_numpy()) == (v["choice"] == "left"))

    assert agreement(0.1) > agreement(1.5) + 0.1
    assert agreement(0.1) > 0.9


# ---------------------------------------------------------------------------------------------- the scenes

def _scene(rng_seed=0, **changes):
    attrs = {a: 0.5 for a in ATTRIBUTES}
    attrs["light"] = "day"
    attrs.update(changes)
    return np.asarray(draw_scene(attrs, np.random.default_rng(rng_seed)), dtype=float)


def test_scenes_show_light_and_greenery():
    brightness = {light: _scene(light=light).mean() for light in ("day", "dusk", "night", "fog")}
    assert brightness["night"] < 0.5 * brightness["day"]
    assert brightness["night"] < brightness["dusk"]

    def green_share(img):
        r, g, b = img[..., 0], img[..., 1], img[..., 2]
        return np.mean((g > r + 20) & (g > b + 20))

    assert green_share(_scene(green=0.95)) > green_share(_scene(green=0.05)) + 0.15


def test_scenes_show_graffiti_litter_and_colour():
    def saturation(img):
        return np.mean(img.max(axis=2) - img.min(axis=2))

    assert saturation(_scene(colour=1.0)) > saturation(_scene(colour=0.0)) + 10
    clean = _scene(graffiti=0.0, litter=0.0, decay=0.0)
    messy = _scene(graffiti=1.0, litter=1.0, decay=1.0)
    assert np.mean(np.abs(clean - messy)) > 20
