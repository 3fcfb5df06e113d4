"""Votes -> per-image scores: TrueSkill (as the Place Pulse site ran it), Q-score and Bradley-Terry.

Each study is scored on its own. `score_votes` returns rows in the PP2 `qscores.tsv` layout, one per
study x location id, with the method's score column (see SCORE_COLUMNS).

TrueSkill depends on the order of the votes, so votes are scored in time order when they carry timestamps
(`order_votes`: a stable sort, so votes at the same second keep their file order), in file order otherwise
(Kaggle's votes.csv has no timestamps and is not chronological). `score_file` says which it used.

TrueSkill here is a specialised 1-vs-1 update (closed form, no factor graph) using the same erfc/cdf/pdf/ppf
approximations as the `trueskill` package's default backend, so it reproduces `trueskill.rate_1vs1` run vote
by vote with the same parameters (tests check agreement to 1e-6) while running much faster
(benchmarks/bench_scoring.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from perceptions.data.placepulse import SCORE_COLUMNS, _row_id, read_votes, study_order, vote_times, write_qscores
from perceptions.errors import PerceptionsError

_CHOICE_CODES = {"left": 0, "right": 1, "equal": 2}


@dataclass(frozen=True)
class TrueSkillParams:
    """Place Pulse's TrueSkill settings: mu 25, sigma 25/3, beta 25/6, tau sigma/100, draw probability 0.13."""
    mu: float = 25.0
    sigma: float = 25.0 / 3
    beta: float = 25.0 / 6
    tau: float = 25.0 / 300
    draw_probability: float = 0.13


PLACE_PULSE_TRUESKILL = TrueSkillParams()


# -- The trueskill package's default backend (trueskill/backends.py), copied so results match bit for bit. ---
def _erfc(x: float) -> float:
    z = abs(x)
    t = 1. / (1. + z / 2.)
    r = t * math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277)))))))))
    return 2. - r if x < 0 else r


def _cdf(x: float) -> float:
    return 0.5 * _erfc(-x / math.sqrt(2))


def _pdf(x: float) -> float:
    return 1 / math.sqrt(2 * math.pi) * math.exp(-(x ** 2 / 2))


def _erfcinv(y: float) -> float:
    if y >= 2:
        return -100.
    if y <= 0:
        return 100.
    zero_point = y < 1
    if not zero_point:
        y = 2 - y
    t = math.sqrt(-2 * math.log(y / 2.))
    x = -0.70711 * ((2.30753 + t * 0.27061) / (1. + t * (0.99229 + t * 0.04481)) - t)
    for _ in range(2):
        err = _erfc(x) - y
        x += err / (1.12837916709551257 * math.exp(-(x ** 2)) - x * err)
    return x if zero_point else -x


def _ppf(p: float) -> float:
    return 0 - 1 * math.sqrt(2) * _erfcinv(2 * p)


def draw_margin(params: TrueSkillParams = PLACE_PULSE_TRUESKILL) -> float:
    """The performance gap counted as a draw, for two single players (as `trueskill.calc_draw_margin`)."""
    return _ppf((params.draw_probability + 1) / 2.) * math.sqrt(2) * params.beta


def trueskill_ratings(left, right, choice, n_items: int, params: TrueSkillParams = PLACE_PULSE_TRUESKILL,
                      start=None):
    """Sequential TrueSkill over votes in the given order; returns (mu, sigma) arrays of length n_items.

    left, right: item indices; choice: 0 left won, 1 right won, 2 equal. start: optional (mu, sigma) arrays
    of length n_items to continue from (the state after earlier votes) instead of the prior, so one vote can
    update a running state (perceptions.data.pairs) with exactly this math.
    """
    if start is None:
        mu = [float(params.mu)] * n_items
        var = [float(params.sigma) ** 2] * n_items
    else:
        mu = [float(m) for m in start[0]]
        var = [float(s) ** 2 for s in start[1]]
    tau2 = params.tau ** 2
    two_beta2 = 2 * params.beta ** 2
    margin = draw_margin(params)
    sqrt, exp, cdf, pdf = math.sqrt, math.exp, _cdf, _pdf
    sqrt2 = math.sqrt(2)
    inv_sqrt_2pi = 1 / math.sqrt(2 * math.pi)
    for a, b, c in zip(np.asarray(left).tolist(), np.asarray(right).tolist(), np.asarray(choice).tolist()):
        if c == 1:
            a, b = b, a  # winner first, as trueskill.rate sorts teams by rank
        va = var[a] + tau2
        vb = var[b] + tau2
        c2 = two_beta2 + va + vb
        cc = sqrt(c2)
        t = (mu[a] - mu[b]) / cc
        eps = margin / cc
        if c != 2:
            x = t - eps
            # cdf(x) = 0.5 * erfc(-x / sqrt2), with _erfc inlined: this branch runs for most votes.
            y = -x / sqrt2
            z = abs(y)
            q = 1. / (1. + z / 2.)
            r = q * exp(-z * z - 1.26551223 + q * (1.00002368 + q * (0.37409196 + q * (0.09678418 + q * (
                -0.18628806 + q * (0.27886807 + q * (-1.13520398 + q * (1.48851587 + q * (
                    -0.82215223 + q * 0.17087277)))))))))
            denom = 0.5 * (2. - r if y < 0 else r)
            v = (inv_sqrt_2pi * exp(-(x ** 2 / 2)) / denom) if denom else -x
            w = v * (v + x)
        else:
            hi, lo = eps - abs(t), -eps - abs(t)
            denom = cdf(hi) - cdf(lo)
            if denom:
                v = (pdf(lo) - pdf(hi)) / denom
                w = v * v + (hi * pdf(hi) - lo * pdf(lo)) / denom
            else:
                v, w = hi, 1.0
            if t < 0:
                v = -v
        # The package raises here (FloatingPointError); we keep both variances positive instead.
        if not 0.0 < w < 1.0:
            w = min(max(w, 0.0), 1.0 - 1e-12)
        mu[a] += va / cc * v
        mu[b] -= vb / cc * v
        var[a] = va * (1.0 - va / c2 * w)
        var[b] = vb * (1.0 - vb / c2 * w)
    return np.array(mu), np.sqrt(np.array(var))


# ---------------------------------------------------------------------------------------------- Q-score

def qscores_salesses(left, right, choice, n_items: int) -> np.ndarray:
    """Q_i = 10/3 (W_i + mean W_j over j that i beat - mean L_j over j that beat i + 1) (Salesses et al. 2013).

    W_i, L_i: wins and losses over all of i's comparisons (ties count in the denominator); the means run over
    comparisons (an image beaten twice counts twice) and are 0 when there is nothing to average.
    """
    left, right, choice = np.asarray(left), np.asarray(right), np.asarray(choice)
    decided = choice != 2
    winner = np.where(choice == 0, left, right)[decided]
    loser = np.where(choice == 0, right, left)[decided]
    total = np.bincount(left, minlength=n_items) + np.bincount(right, minlength=n_items)
    wins = np.bincount(winner, minlength=n_items)
    losses = np.bincount(loser, minlength=n_items)
    with np.errstate(invalid="ignore", divide="ignore"):
        w_ratio = np.where(total > 0, wins / total, 0.0)
        l_ratio = np.where(total > 0, losses / total, 0.0)
        beaten_w = np.bincount(winner, weights=w_ratio[loser], minlength=n_items)
        beaters_l = np.bincount(loser, weights=l_ratio[winner], minlength=n_items)
        mean_beaten_w = np.where(wins > 0, beaten_w / np.maximum(wins, 1), 0.0)
        mean_beaters_l = np.where(losses > 0, beaters_l / np.maximum(losses, 1), 0.0)
    return 10.0 / 3.0 * (w_ratio + mean_beaten_w - mean_beaters_l + 1.0)


# ---------------------------------------------------------------------------------------------- Bradley-Terry

def bradley_terry(left, right, choice, n_items: int, prior_ties: float = 1.0) -> np.ndarray:
    """Maximum-likelihood Bradley-Terry log-strengths, ties counted as half a win for each side.

    Regularised by `prior_ties` virtual tied games of every image against a reference of strength 0, so an
    image that won every vote still gets a finite score; the objective is strictly convex (unique optimum).
    """
    from scipy.optimize import minimize
    from scipy.special import expit

    left, right = np.asarray(left), np.asarray(right)
    y = np.select([np.asarray(choice) == 0, np.asarray(choice) == 1], [1.0, 0.0], 0.5)

    def objective(theta):
        diff = theta[left] - theta[right]
        p = expit(diff)
        nll = -np.sum(y * diff - np.logaddexp(0.0, diff))
        nll -= prior_ties * np.sum(0.5 * theta - np.logaddexp(0.0, theta))
        resid = y - p
        grad = -np.bincount(left, weights=resid, minlength=n_items) + np.bincount(right, weights=resid,
                                                                                  minlength=n_items)
        grad -= prior_ties * (0.5 - expit(theta))
        return nll, grad

    result = minimize(objective, np.zeros(n_items), jac=True, method="L-BFGS-B",
                      options={"maxiter": 5000, "gtol": 1e-10, "ftol": 1e-15})
    return result.x


# ---------------------------------------------------------------------------------------------- tables

def _method(method: str) -> str:
    key = str(method).strip().lower().replace("_", "-")
    if key not in SCORE_COLUMNS:
        raise PerceptionsError(f"unknown scoring method {method!r}; expected one of {', '.join(SCORE_COLUMNS)}")
    return key


def _check_votes(votes: pd.DataFrame) -> None:
    missing = [c for c in ("study", "left", "right", "choice") if c not in votes.columns]
    if missing:
        raise PerceptionsError(f"votes table lacks column(s) {', '.join(missing)}")
    if len(votes) == 0:
        raise PerceptionsError("no votes to score")
    bad = ~votes["choice"].isin(list(_CHOICE_CODES))
    if bad.any():
        raise PerceptionsError(f"vote {int(np.argmax(bad.to_numpy()))}: choice {votes['choice'][bad].iloc[0]!r} "
                               "is not left, right or equal")
    same = (votes["left"] == votes["right"]).to_numpy()
    if same.any():
        raise PerceptionsError(f"vote {int(np.argmax(same))} compares an image with itself")


def _place_ids(votes: pd.DataFrame, locations: np.ndarray) -> np.ndarray:
    """Each location's PP2 place (city) id, when the votes carry one; '' otherwise."""
    if "left_place_id" not in votes.columns or "right_place_id" not in votes.columns:
        return np.full(len(locations), "", dtype=object)
    pairs = pd.concat([
        pd.DataFrame({"location_id": votes["left"].to_numpy(), "place_id": votes["left_place_id"].to_numpy()}),
        pd.DataFrame({"location_id": votes["right"].to_numpy(), "place_id": votes["right_place_id"].to_numpy()}),
    ])
    first = pairs[pairs["place_id"].astype(str) != ""].drop_duplicates("location_id").set_index("location_id")
    return first["place_id"].reindex(locations).fillna("").to_numpy(dtype=object)


def order_votes(votes: pd.DataFrame, path=None) -> tuple[pd.DataFrame, str]:
    """(votes in the order TrueSkill reads them, "timestamp" or "file"): sorted by `timestamp` (stable) when
    the votes have timestamps, as given otherwise. Timestamps in two formats or unreadable ones are an error
    naming the row (the file's row when `path` is given; see placepulse.vote_times)."""
    times = vote_times(votes, path)
    if times is None:
        return votes, "file"
    return votes.iloc[np.argsort(times, kind="stable")], "timestamp"


def score_votes(votes: pd.DataFrame, method: str = "trueskill", path=None) -> pd.DataFrame:
    """Per-image scores in the qscores layout: one row per study x location id, studies in canonical order,
    locations sorted; columns `_id location_id num_votes place_id study_id <score column(s)> study`.
    Votes are read in time order when they have timestamps (`order_votes`; `path` names the file in errors)."""
    method = _method(method)
    _check_votes(votes)
    return _score_ordered(order_votes(votes, path)[0], method)


def _score_ordered(votes: pd.DataFrame, method: str) -> pd.DataFrame:
    from perceptions.studies import study

    n_votes = len(votes)
    # Factorize once for all studies (sorted, so a study's locations come out sorted too).
    codes, all_locations = pd.factorize(pd.concat([votes["left"], votes["right"]], ignore_index=True).astype(str),
                                        sort=True)
    all_left, all_right = codes[:n_votes], codes[n_votes:]
    all_choice = pd.Categorical(votes["choice"], categories=list(_CHOICE_CODES)).codes.astype(np.int64)
    study_codes, study_keys = pd.factorize(votes["study"])
    # Aliases and PP2 ids are accepted too (an unknown study is an error, never silently skipped).
    canonical = np.array([study(k).name for k in study_keys], dtype=object)
    study_of_vote = canonical[study_codes]
    frames = []
    for name in study_order(canonical):
        rows = np.flatnonzero(study_of_vote == name)
        used, local = np.unique(np.concatenate([all_left[rows], all_right[rows]]), return_inverse=True)
        left, right, choice = local[:len(rows)], local[len(rows):], all_choice[rows]
        n_items = len(used)
        locations = np.asarray(all_locations[used], dtype=object)
        sid = study(name).study_id
        frame = pd.DataFrame({
            "_id": [_row_id(sid, loc) for loc in locations],
            "location_id": locations,
            "num_votes": np.bincount(left, minlength=n_items) + np.bincount(right, minlength=n_items),
            "place_id": _place_ids(votes.iloc[rows], locations),
            "study_id": sid,
        })
        if method == "trueskill":
            mu, sigma = trueskill_ratings(left, right, choice, n_items)
            frame["trueskill.score"], frame["trueskill.stds.-1"] = mu, sigma
        elif method == "qscore":
            frame["qscore"] = qscores_salesses(left, right, choice, n_items)
        else:
            frame["bradley_terry.score"] = bradley_terry(left, right, choice, n_items)
        frame["study"] = name
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def score_file(votes_path, out, method: str = "trueskill", overwrite: bool = False) -> dict:
    """Read votes (any PP2 format), score them and write a qscores.tsv; returns a summary dict (its `order`:
    "timestamp" when the votes were scored in time order, "file" when the file has no timestamps)."""

    method = _method(method)
    out = Path(out)
    if out.exists() and not overwrite:
        raise PerceptionsError(f"{out} already exists; pass --overwrite to replace it")
    if out.is_dir():
        raise PerceptionsError(f"{out} is a folder; give a file name such as {out / 'qscores.tsv'}")
    votes = read_votes(votes_path)
    _check_votes(votes)
    ordered, order = order_votes(votes, votes_path)
    scores = _score_ordered(ordered, method)
    write_qscores(scores, out)
    studies = list(pd.unique(scores["study"]))
    return {"votes": len(votes), "images": int(scores["location_id"].nunique()), "rows": len(scores),
            "studies": studies, "method": method, "order": order, "out": str(out)}
