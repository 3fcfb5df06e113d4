"""Crowds of the synthetic city: the default crowd unchanged, a local crowd that weighs the scene differently,
and a voter subgroup that judges as another crowd (`perceptions synth --crowd/--subgroup`)."""
import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from perceptions.cli import main
from perceptions.data.synthetic import ATTRIBUTES, raw_perceptions, sample_places, simulate_votes, true_perceptions
from perceptions.studies import STUDY_NAMES, study

ARGS = ["--images", "40", "--cities", "2", "--votes-per-image", "4", "--seed", "3", "--no-progress"]
# sha256 of the tables of that city as synth wrote them before crowds existed (commit f972309).
BEFORE = {"truth.csv": "d671685b08afd3e544749ac2060cb46bed32854fedb69d5f36a6b8f3d1bf63f8",
          "votes.tsv": "863c024bc976f6ee0547782a7afa58b97525821820e2074e38bc8eded7e5f9e7",
          "qscores.tsv": "521fd6ea9da17be50ba4143ff23b36bd293ec19f0ab2709b58caa96b1b39fe04"}


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def cities(tmp_path_factory):
    root = tmp_path_factory.mktemp("crowds")
    assert main(["synth", "--out", str(root / "default"), *ARGS]) == 0
    assert main(["synth", "--out", str(root / "local"), *ARGS, "--crowd", "local"]) == 0
    assert main(["synth", "--out", str(root / "mixed"), *ARGS, "--votes-per-image", "30",
                 "--subgroup", "local", "--subgroup-share", "0.3"]) == 0
    assert main(["synth", "--out", str(root / "plain30"), *ARGS, "--votes-per-image", "30"]) == 0
    return root


def test_the_default_crowd_writes_the_same_bytes_as_before(cities):
    for name, digest in BEFORE.items():
        assert _sha(cities / "default" / name) == digest, name
    meta = json.loads((cities / "default" / "city.json").read_text())
    assert meta["crowd"] == "default" and meta["subgroup"] is None and meta["seed"] == 3
    assert not (cities / "default" / "voters.csv").exists()


def test_local_crowd_follows_its_documented_formula():
    places = sample_places(500, 4, seed=1)
    x = {a: places[a].to_numpy(float) - 0.5 for a in ATTRIBUTES}
    dark = places["light"].map({"day": 0.0, "dusk": 0.35, "fog": 0.25, "night": 1.0}).to_numpy(float)
    gloom = places["light"].map({"day": 0.0, "dusk": 0.2, "fog": 0.6, "night": 0.8}).to_numpy(float)
    # safe and beautiful as the docstring of crowds.py writes them out, term by term.
    safe = (-1.3 * x["decay"] - 0.0 * x["graffiti"] - 0.6 * x["litter"] - 0.8 * x["green"] - 0.3 * x["road_damage"]
            + 0.4 * x["shops"] - 2.5 * dark + 2.0 * x["people"] * (1 - dark) - 0.8 * dark * x["decay"])
    fog, dusk = (places["light"] == "fog").to_numpy(float), (places["light"] == "dusk").to_numpy(float)
    beautiful = (0.0 * x["green"] + 1.9 * x["colour"] - 0.7 * x["decay"] - 0.5 * x["litter"] - 0.4 * x["graffiti"]
                 + 1.3 * x["height"] - 0.5 * x["road_width"] + 0.6 * dusk - 0.5 * fog - 1.0 * x["green"] * x["decay"])
    depressing = (0.9 * x["decay"] + 0.9 * x["litter"] + 0.3 * x["graffiti"] + 0.1 * x["green"] - 0.4 * x["colour"]
                  - 0.3 * x["people"] - 0.8 * x["height"] + 1.6 * gloom + 1.0 * gloom * x["decay"])
    local = raw_perceptions(places, "local")
    np.testing.assert_allclose(local["safe"], safe, atol=1e-9)
    np.testing.assert_allclose(local["beautiful"], beautiful, atol=1e-9)
    np.testing.assert_allclose(local["depressing"], depressing, atol=1e-9)


def test_local_truth_is_scaled_and_differs_from_the_default_crowd_but_not_entirely():
    places = sample_places(4000, 4, seed=11)
    default, local = true_perceptions(places, 11), true_perceptions(places, 11, "local")
    for name in STUDY_NAMES:
        assert abs(local[name].mean()) < 0.2 and 0.8 < local[name].std() < 1.25, name
        rho = spearmanr(default[name], local[name])[0]
        assert 0.5 < rho < 0.9, (name, rho)  # measurably another crowd, still related


def test_a_local_city_votes_as_the_local_crowd(cities):
    truth = pd.read_csv(cities / "local" / "truth.csv", dtype={"location_id": str})
    default_truth = pd.read_csv(cities / "default" / "truth.csv", dtype={"location_id": str})
    # Same places and scenes; only the perceptions (and so the votes) differ.
    assert (truth["location_id"] == default_truth["location_id"]).all()
    assert _sha(next((cities / "local" / "images").iterdir())) == \
        _sha(cities / "default" / "images" / next((cities / "local" / "images").iterdir()).name)
    np.testing.assert_allclose(truth["safe"], true_perceptions(truth, 3, "local")["safe"], atol=1e-4)
    assert json.loads((cities / "local" / "city.json").read_text())["crowd"] == "local"


def _agreement(votes, truth):
    """Share of decided votes whose winner has the higher true value of the study."""
    hits = []
    for name in STUDY_NAMES:
        t = truth.set_index("location_id")[name]
        v = votes[(votes["study_id"] == study(name).study_id) & (votes["choice"] != "equal")]
        left_higher = t.reindex(v["left"]).to_numpy() > t.reindex(v["right"]).to_numpy()
        hits.append(left_higher == (v["choice"] == "left").to_numpy())
    return float(np.concatenate(hits).mean())


def test_a_subgroup_judges_as_its_crowd_and_can_be_separated_by_voter(cities):
    mixed, plain = cities / "mixed", cities / "plain30"
    # truth.csv stays the main crowd's; the pairs, voters and times are those of the city without a subgroup.
    assert _sha(mixed / "truth.csv") == _sha(plain / "truth.csv")
    votes = pd.read_csv(mixed / "votes.tsv", sep="\t", dtype=str)
    same = pd.read_csv(plain / "votes.tsv", sep="\t", dtype=str)
    cols = ["_id", "left", "right", "study_id", "timestamp", "voter_uniqueid"]
    pd.testing.assert_frame_equal(votes[cols], same[cols])
    voters = pd.read_csv(mixed / "voters.csv", dtype=str)
    assert list(voters.columns) == ["voter_uniqueid", "crowd"] and voters["voter_uniqueid"].is_unique
    assert set(voters["crowd"]) == {"default", "local"}
    assert set(votes["voter_uniqueid"]) == set(voters["voter_uniqueid"])
    share = (voters["crowd"] == "local").mean()
    assert 0.2 < share < 0.4
    meta = json.loads((mixed / "city.json").read_text())
    assert (meta["crowd"], meta["subgroup"], meta["subgroup_share"]) == ("default", "local", 0.3)
    assert meta["subgroup_voters"] == int((voters["crowd"] == "local").sum())

    in_group = votes["voter_uniqueid"].isin(voters.loc[voters["crowd"] == "local", "voter_uniqueid"])
    # The main crowd's votes are unchanged; the subgroup's follow the local truth more than the default one.
    assert (votes.loc[~in_group, "choice"] == same.loc[~in_group, "choice"]).all()
    assert (votes.loc[in_group, "choice"] != same.loc[in_group, "choice"]).mean() > 0.1
    truth = pd.read_csv(mixed / "truth.csv", dtype={"location_id": str})
    local = truth[["location_id"]].join(true_perceptions(truth, 3, "local"))
    assert _agreement(votes[in_group], local) > _agreement(votes[in_group], truth) + 0.05
    assert _agreement(votes[~in_group], truth) > _agreement(votes[~in_group], local) + 0.05


def test_simulate_votes_without_a_subgroup_keeps_its_columns():
    places = sample_places(30, 2, seed=2)
    votes = simulate_votes(places["location_id"], true_perceptions(places, 2), 4, seed=2)
    assert list(votes.columns) == ["_id", "choice", "left", "right", "study_id", "timestamp", "voter_uniqueid"]
    mixed = simulate_votes(places["location_id"], true_perceptions(places, 2), 4, seed=2,
                           subgroup_truth=true_perceptions(places, 2, "local"), subgroup_share=0.0)
    assert (mixed["crowd"] == "main").all()
    pd.testing.assert_frame_equal(mixed.drop(columns="crowd"), votes)


@pytest.mark.parametrize("extra, words", [
    (["--subgroup", "default"], "is the main crowd"),
    (["--subgroup", "local", "--subgroup-share", "1.5"], "--subgroup-share"),
])
def test_bad_crowd_options_are_one_line(tmp_path, capsys, extra, words):
    assert main(["synth", "--out", str(tmp_path / "c"), *ARGS, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1
    assert not (tmp_path / "c").exists()


def test_synth_help_documents_the_local_crowd(capsys):
    with pytest.raises(SystemExit):
        main(["synth", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--crowd {default,local}" in out and "green 0.3->-0.8" in out and "--subgroup-share" in out
