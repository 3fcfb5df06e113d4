"""Votes -> scores: TrueSkill against the `trueskill` package (in time order), Q-score by hand, Bradley-Terry on
known strengths."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import trueskill

from perceptions.data.placepulse import read_qscores, read_votes
from perceptions.data.scoring import (SCORE_COLUMNS, bradley_terry, draw_margin, qscores_salesses, score_file,
                                      score_votes, trueskill_ratings)
from perceptions.errors import DataError, PerceptionsError
from perceptions.studies import STUDY_NAMES, study

VOTES = Path(__file__).parent / "fixtures" / "placepulse" / "votes_boston_newyork.csv"
PP_ENV = trueskill.TrueSkill(mu=25, sigma=25 / 3, beta=25 / 6, tau=25 / 300, draw_probability=0.13)


def package_ratings(votes: pd.DataFrame) -> dict:
    """The reference: the trueskill package, vote by vote in time order (file order without timestamps; votes
    at the same time in file order), one rating pool per study."""
    if "timestamp" in votes.columns:
        votes = votes.iloc[np.argsort(pd.to_datetime(votes["timestamp"]).to_numpy(), kind="stable")]
    ratings = {}
    for s, a, b, c in zip(votes["study"], votes["left"], votes["right"], votes["choice"]):
        ra = ratings.get((s, a)) or PP_ENV.create_rating()
        rb = ratings.get((s, b)) or PP_ENV.create_rating()
        if c == "right":
            rb, ra = trueskill.rate_1vs1(rb, ra, env=PP_ENV)
        else:
            ra, rb = trueskill.rate_1vs1(ra, rb, drawn=(c == "equal"), env=PP_ENV)
        ratings[(s, a)], ratings[(s, b)] = ra, rb
    return ratings


def assert_matches_package(votes: pd.DataFrame, tol: float = 1e-6) -> pd.DataFrame:
    ours = score_votes(votes, "trueskill")
    ref = package_ratings(votes)
    keys = list(zip(ours["study"], ours["location_id"]))
    assert set(keys) == set(ref)
    assert np.max(np.abs(ours["trueskill.score"].to_numpy() - [ref[k].mu for k in keys])) < tol
    assert np.max(np.abs(ours["trueskill.stds.-1"].to_numpy() - [ref[k].sigma for k in keys])) < tol
    return ours


def random_votes(n_votes: int, n_images: int, seed: int, studies=STUDY_NAMES, tie_rate=0.2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    left = rng.integers(0, n_images, n_votes)
    right = (left + rng.integers(1, n_images, n_votes)) % n_images
    return pd.DataFrame({
        "study": np.array(studies, dtype=object)[rng.integers(0, len(studies), n_votes)],
        "left": [f"img{i}" for i in left], "right": [f"img{i}" for i in right],
        "choice": rng.choice(["left", "right", "equal"], n_votes, p=[(1 - tie_rate) / 2, (1 - tie_rate) / 2,
                                                                     tie_rate]),
    })


# ---------------------------------------------------------------------------------------------- TrueSkill

def test_draw_margin_matches_the_package():
    assert draw_margin() == pytest.approx(trueskill.calc_draw_margin(0.13, 2, PP_ENV), abs=1e-12)


def test_trueskill_matches_the_package_on_the_real_votes():
    votes = read_votes(VOTES)
    assert not pd.to_datetime(votes["timestamp"]).is_monotonic_increasing  # the file is not in time order
    ours = assert_matches_package(votes)
    assert len(ours) == 1513
    # ... and time order matters: the package in file order gives other scores.
    in_file_order = package_ratings(votes.drop(columns="timestamp"))
    assert max(abs(mu - in_file_order[(s, loc)].mu) for s, loc, mu in
               zip(ours["study"], ours["location_id"], ours["trueskill.score"])) > 0.5


def _site_file(votes: pd.DataFrame, path: Path, times) -> Path:
    pd.DataFrame({"_id": [f"v{i}" for i in range(len(votes))], "choice": votes["choice"].to_numpy(),
                  "left": votes["left"].to_numpy(), "right": votes["right"].to_numpy(),
                  "study_id": [study(s).study_id for s in votes["study"]], "timestamp": list(times),
                  "voter_uniqueid": "v"}).to_csv(path, index=False)
    return path


def test_shuffled_votes_with_timestamps_score_as_the_sorted_file(tmp_path):
    votes = random_votes(800, 25, seed=11, studies=("safe", "lively"))
    stamps = pd.Series(pd.Timestamp("2013-06-01") + pd.to_timedelta(np.arange(800) * 61, unit="s"))
    times = stamps.dt.strftime("%Y-%m-%d %H:%M:%S").to_numpy()
    times[10:20] = times[10]  # ten votes in the same second: they keep their file order
    shuffle = np.random.default_rng(0).permutation(800)
    shuffle = np.concatenate([np.arange(10, 20), np.setdiff1d(shuffle, np.arange(10, 20), assume_unique=True)])
    sorted_summary = score_file(_site_file(votes, tmp_path / "sorted.csv", times), tmp_path / "a.tsv")
    shuffled_summary = score_file(_site_file(votes.iloc[shuffle], tmp_path / "shuffled.csv", times[shuffle]),
                                  tmp_path / "b.tsv")
    assert sorted_summary["order"] == shuffled_summary["order"] == "timestamp"
    a, b = read_qscores(tmp_path / "a.tsv"), read_qscores(tmp_path / "b.tsv")
    pd.testing.assert_frame_equal(a, b)
    # the same as scoring the sorted votes in file order, and as the package in time order
    plain = score_votes(votes)
    assert np.allclose(a["trueskill.score"], plain["trueskill.score"], rtol=0, atol=1e-9)
    assert_matches_package(read_votes(tmp_path / "shuffled.csv"))
    # without timestamps the shuffled file is scored in file order, and says so
    no_times = tmp_path / "no_times.csv"
    read_votes(tmp_path / "shuffled.csv").drop(columns=["timestamp"]).to_csv(no_times, index=False)
    summary = score_file(no_times, tmp_path / "c.tsv")
    assert summary["order"] == "file"
    assert not np.allclose(read_qscores(tmp_path / "c.tsv")["trueskill.score"], a["trueskill.score"])


@pytest.mark.parametrize("times,row,problem", [
    (["2013-06-01 12:00:00", "2013-06-01 12:01:00", "1370088180", "2013-06-01 12:04:00"], 4, "two formats"),
    (["06/01/2013 12:00", "06/01/2013 12:01", "2013-06-01 12:02:00", "06/01/2013"], 4, "two formats"),
    (["1370088000", "1370088060", "06/01/2013", "1370088180"], 4, "two formats"),
    (["2013-06-01 12:00:00", "yesterday", "2013-06-01 12:02:00", "x"], 3, "not a date and time"),
    (["2013-06-01 12:00:00", "2013-02-30 12:00:00", "2013-06-01 12:02:00", "2013-13-01"], 3, "not a possible"),
    (["2013-06-01 12:00:00", "2013-06-01 12:01:00", "", "2013-06-01 12:03:00"], 4, "no timestamp"),
])
def test_bad_or_mixed_timestamps_are_one_line_naming_file_and_row(tmp_path, times, row, problem):
    votes = random_votes(4, 5, seed=1, studies=("safe",))
    path = _site_file(votes, tmp_path / "votes.csv", times)
    with pytest.raises(DataError, match=problem) as info:
        score_file(path, tmp_path / "q.tsv")
    message = str(info.value)
    assert "\n" not in message and str(path) in message and f"row {row}" in message and info.value.row == row
    assert not (tmp_path / "q.tsv").exists()


@pytest.mark.parametrize("times", [["1370088000", "1370088060.5", "1370088120", "1370088180"],
                                   ["06/01/2013 12:00", "06/01/2013 12:01:30", "6/2/2013", "06/03/2013 00:00"],
                                   ["2013-06-01", "2013-06-01 12:00:00", "2013-06-01T13:00:00Z", "2013-06-02"]])
def test_each_timestamp_format_gives_time_order(tmp_path, times):
    votes = random_votes(4, 5, seed=1, studies=("safe",))
    back = _site_file(votes.iloc[::-1], tmp_path / "back.csv", times[::-1])
    score_file(back, tmp_path / "a.tsv")
    expected = score_votes(votes)  # already in time order: no timestamps, file order
    got = read_qscores(tmp_path / "a.tsv")
    assert np.allclose(got["trueskill.score"], expected["trueskill.score"], rtol=0, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_trueskill_matches_the_package_on_random_votes_with_ties(seed):
    # Few images, many votes: ratings drift far apart, exercising the tails of cdf/pdf.
    assert_matches_package(random_votes(3000, 40, seed, studies=("safe", "boring"), tie_rate=0.3))


def test_trueskill_matches_the_package_with_lopsided_outcomes():
    # The same image wins every time: large mean gaps, where the win and draw branches are most fragile.
    n = 400
    votes = pd.DataFrame({"study": "safe", "left": ["champ"] * n, "right": [f"x{i % 7}" for i in range(n)],
                          "choice": ["left"] * (n - 20) + ["equal"] * 10 + ["right"] * 10})
    assert_matches_package(votes)


def test_trueskill_depends_on_vote_order_and_studies_are_independent():
    votes = random_votes(600, 30, seed=3, studies=("safe", "lively"))
    forward = score_votes(votes, "trueskill")
    backward = score_votes(votes.iloc[::-1].reset_index(drop=True), "trueskill")
    assert not np.allclose(forward["trueskill.score"], backward["trueskill.score"])
    alone = score_votes(votes[votes["study"] == "safe"], "trueskill")
    mixed = forward[forward["study"] == "safe"].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, mixed)


def test_score_votes_accepts_study_ids_and_aliases():
    votes = random_votes(200, 20, seed=2, studies=("safe",))
    by_name = score_votes(votes)
    assert score_votes(votes.assign(study="safety")).equals(by_name)
    assert score_votes(votes.assign(study=study("safe").study_id)).equals(by_name)


def test_trueskill_starts_from_place_pulse_priors():
    mu, sigma = trueskill_ratings([0], [1], [2], 3)
    assert mu[2] == 25.0 and sigma[2] == pytest.approx(25 / 3)
    assert mu[0] == pytest.approx(mu[1]) and sigma[0] < 25 / 3


# ---------------------------------------------------------------------------------------------- Q-score

def test_qscore_by_hand():
    # A beats B, A beats C, B beats C, A ties B.
    # W_A = 2/3, L_A = 0; W_B = 1/3, L_B = 1/3 (the tie counts in the denominator); W_C = 0, L_C = 1.
    # Q_A = 10/3 (2/3 + mean(W_B, W_C) - 0 + 1) = 55/9
    # Q_B = 10/3 (1/3 + W_C - L_A + 1) = 40/9
    # Q_C = 10/3 (0 + 0 - mean(L_A, L_B) + 1) = 25/9
    votes = pd.DataFrame({"study": "safe", "left": ["A", "A", "B", "A"], "right": ["B", "C", "C", "B"],
                          "choice": ["left", "left", "left", "equal"]})
    q = score_votes(votes, "qscore").set_index("location_id")["qscore"]
    assert q["A"] == pytest.approx(55 / 9) and q["B"] == pytest.approx(40 / 9) and q["C"] == pytest.approx(25 / 9)


def test_qscore_stays_within_0_and_10():
    votes = random_votes(2000, 50, seed=5)
    q = score_votes(votes, "qscore")["qscore"]
    assert q.between(0, 10).all()
    # One vote: the winner gets 10/3 (1 + 0 - 0 + 1), the loser 10/3 (0 + 0 - 0 + 1).
    assert qscores_salesses([0], [1], [0], 2).tolist() == pytest.approx([20 / 3, 10 / 3])


# ---------------------------------------------------------------------------------------------- Bradley-Terry

def test_bradley_terry_recovers_known_strengths():
    rng = np.random.default_rng(0)
    n_items, n_votes = 30, 6000
    strength = np.linspace(-2, 2, n_items)
    left = rng.integers(0, n_items, n_votes)
    right = (left + rng.integers(1, n_items, n_votes)) % n_items
    p_left = 1 / (1 + np.exp(-(strength[left] - strength[right])))
    u = rng.random(n_votes)
    choice = np.where(u < 0.15, 2, np.where(rng.random(n_votes) < p_left, 0, 1))  # 15% ties at random
    theta = bradley_terry(left, right, choice, n_items)
    rank_corr = pd.Series(theta).corr(pd.Series(strength), method="spearman")
    assert rank_corr > 0.97
    assert np.corrcoef(theta, strength)[0, 1] > 0.97


def test_bradley_terry_keeps_unbeaten_images_finite():
    votes = pd.DataFrame({"study": "safe", "left": ["A", "A", "B", "C"], "right": ["B", "C", "C", "D"],
                          "choice": ["left", "left", "left", "equal"]})
    bt = score_votes(votes, "bradley-terry").set_index("location_id")["bradley_terry.score"]
    assert np.isfinite(bt).all()
    assert bt["A"] > bt["B"] > bt["C"] and bt["A"] < 5
    assert bt["C"] < bt["D"] < bt["A"]  # D only tied C, so the prior pulls it toward the middle


def test_bradley_terry_ties_count_as_half_wins():
    votes = pd.DataFrame({"study": "safe", "left": ["A", "B"], "right": ["B", "A"], "choice": ["equal", "equal"]})
    bt = score_votes(votes, "bradley-terry")["bradley_terry.score"]
    assert np.allclose(bt, 0.0, atol=1e-6)


# ---------------------------------------------------------------------------------------------- tables

@pytest.mark.parametrize("method", sorted(SCORE_COLUMNS))
def test_score_votes_layout(method):
    votes = random_votes(300, 20, seed=7, studies=("boring", "safe"))
    scores = score_votes(votes, method)
    assert list(scores.columns[:5]) == ["_id", "location_id", "num_votes", "place_id", "study_id"]
    assert SCORE_COLUMNS[method] in scores.columns and scores.columns[-1] == "study"
    assert scores["study"].unique().tolist() == ["safe", "boring"]  # canonical order
    assert not scores.duplicated(["study", "location_id"]).any()
    for name, group in scores.groupby("study"):
        assert (group["study_id"] == study(name).study_id).all()
        assert group["num_votes"].sum() == 2 * (votes["study"] == name).sum()
        assert group["location_id"].is_monotonic_increasing


def test_score_votes_rejects_bad_tables():
    with pytest.raises(PerceptionsError, match="unknown scoring method"):
        score_votes(random_votes(10, 5, 0), "elo")
    with pytest.raises(PerceptionsError, match="lacks column"):
        score_votes(pd.DataFrame({"left": ["a"], "right": ["b"]}))
    with pytest.raises(PerceptionsError, match="no votes"):
        score_votes(random_votes(10, 5, 0).iloc[:0])
    with pytest.raises(PerceptionsError, match="unknown study 'cleaner'"):
        score_votes(random_votes(10, 5, 0).assign(study="cleaner"))
    bad = random_votes(10, 5, 0)
    bad.loc[3, "choice"] = "both"
    with pytest.raises(PerceptionsError, match="'both'"):
        score_votes(bad)
