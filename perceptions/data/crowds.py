"""Crowds of the synthetic city: how the people who vote weigh a scene (`perceptions synth --crowd`).

default  the study formulas in perceptions/data/synthetic.py's docstring: the crowd the shipped model learnt.
local    a crowd that weighs the same scenes differently, as residents of one city might judge their own
         streets against an online crowd from elsewhere. Its formulas are the default ones with these terms
         changed (term: default weight -> local weight; every other term as in the default crowd):
           safe        green 0.3 -> -0.8 (greenery reads as untended, a place to hide), people (1 - dark)
                       0.5 -> 2.0 (eyes on the street), dark -1.2 -> -2.5 (street lighting matters more),
                       graffiti -0.9 -> 0 (tags are part of the street here)
           lively      people 1.2 -> 0.2, graffiti (shops + 0.5) 1.0 -> -0.6, colour 0.5 -> 1.8, cars 0.3 -> -0.7
           beautiful   green 1.6 -> 0, height -0.6 -> 1.3 (towers are admired), colour 0.9 -> 1.9
           wealthy     height 0.5 -> 1.6, cars 0.3 -> 1.3, green 0.5 -> -0.3
           boring      road_width 1.0 -> -0.1, green -0.5 -> 0.8
           depressing  green -1.0 -> 0.1, height 0.5 -> -0.8, gloom 0.6 -> 1.6
         Each local study is centred and scaled with its own constants (measured once on 20,000 places of 4
         cities, seed 0), so it too has mean ~0 and sd ~1. On those places the Spearman correlation of the
         local with the default study function is 0.66 (beautiful) to 0.81 (wealthy): a model of the default
         crowd still ranks the local crowd's streets better than chance, but measurably worse than it could.

A voter subgroup (`--subgroup CROWD --subgroup-share F`): a share F of the voters, chosen by voter id, judge
with the subgroup crowd's formulas while the others judge with the main crowd's (`--crowd`); truth.csv stays the
main crowd's truth, voters.csv says which voter belongs to which crowd, city.json records both.

How any crowd answers one pair (`tie_margin`, `careful_choices`, `careless_choices`; synthetic.simulate_votes
and benchmarks/active_votes.py both use them): a careful voter perceives the true difference plus noise
N(0, crowd_noise^2) and says "equal" within a margin that makes 13% of careful votes ties (Place Pulse's
share); a careless voter answers at random.
"""
from __future__ import annotations

import math

import numpy as np

from perceptions.errors import PerceptionsError

CROWD_NAMES = ("default", "local")
TIE_SHARE = 0.13

# Terms of the study formulas that a crowd may weigh differently: name -> function of the centred attributes
# x (dict), dark, gloom (arrays), as in synthetic.raw_perceptions.
_TERMS = {
    "green": lambda x, dark, gloom: x["green"],
    "people (1 - dark)": lambda x, dark, gloom: x["people"] * (1 - dark),
    "dark": lambda x, dark, gloom: dark,
    "graffiti": lambda x, dark, gloom: x["graffiti"],
    "people": lambda x, dark, gloom: x["people"],
    "graffiti (shops + 0.5)": lambda x, dark, gloom: x["graffiti"] * (x["shops"] + 0.5),
    "colour": lambda x, dark, gloom: x["colour"],
    "cars": lambda x, dark, gloom: x["cars"],
    "height": lambda x, dark, gloom: x["height"],
    "road_width": lambda x, dark, gloom: x["road_width"],
    "gloom": lambda x, dark, gloom: gloom,
}

# crowd -> study -> [(term, default weight, this crowd's weight)]: the docstring's table, which this must match.
CHANGES = {
    "local": {
        "safe": [("green", 0.3, -0.8), ("people (1 - dark)", 0.5, 2.0), ("dark", -1.2, -2.5),
                 ("graffiti", -0.9, 0.0)],
        "lively": [("people", 1.2, 0.2), ("graffiti (shops + 0.5)", 1.0, -0.6), ("colour", 0.5, 1.8),
                   ("cars", 0.3, -0.7)],
        "beautiful": [("green", 1.6, 0.0), ("height", -0.6, 1.3), ("colour", 0.9, 1.9)],
        "wealthy": [("height", 0.5, 1.6), ("cars", 0.3, 1.3), ("green", 0.5, -0.3)],
        "boring": [("road_width", 1.0, -0.1), ("green", -0.5, 0.8)],
        "depressing": [("green", -1.0, 0.1), ("height", 0.5, -0.8), ("gloom", 0.6, 1.6)],
    },
}

# (centre, scale) of each raw study value of a non-default crowd: measured once on 20,000 places (4 cities,
# seed 0), then fixed (the default crowd's are synthetic._TRUTH_SCALE).
TRUTH_SCALES = {
    "local": {"safe": (-0.781, 1.248), "lively": (-0.409, 0.835), "beautiful": (-0.075, 1.003),
              "wealthy": (-0.132, 1.0), "boring": (0.236, 0.75), "depressing": (0.492, 0.94)},
}


def check_crowd(name: str, option: str = "--crowd") -> str:
    if name not in CROWD_NAMES:
        raise PerceptionsError(f"{option} {name!r} is not a crowd; expected one of {', '.join(CROWD_NAMES)}")
    return name


def adjust(raw: dict, crowd: str, x: dict, dark, gloom) -> dict:
    """The raw study values of `crowd`, from the default crowd's `raw` (a dict of arrays): each changed term's
    weight swapped for the crowd's own."""
    if crowd == "default":
        return raw
    out = dict(raw)
    for name, changes in CHANGES[check_crowd(crowd)].items():
        for term, before, after in changes:
            out[name] = out[name] + (after - before) * _TERMS[term](x, dark, gloom)
    return out


def help_text() -> str:
    """One paragraph for `synth --help`: what each crowd changes."""
    parts = []
    for crowd, studies in CHANGES.items():
        terms = "; ".join(f"{name}: " + ", ".join(f"{term} {a:g}->{b:g}" for term, a, b in changes)
                          for name, changes in studies.items())
        parts.append(f"{crowd}: the default formulas with these weights changed ({terms})")
    return "default: the formulas of perceptions/data/synthetic.py; " + "; ".join(parts)


def subgroup_voters(n_voters: int, share: float, seed: int) -> np.ndarray:
    """A boolean mask over voter indices: round(share * n_voters) voters, chosen at random from their own
    random stream, so adding a subgroup never changes which pairs or voters the main crowd draws."""
    if not 0.0 <= share <= 1.0:
        raise PerceptionsError(f"--subgroup-share must be within 0..1, got {share}")
    rng = np.random.default_rng([seed, 4])
    mask = np.zeros(n_voters, dtype=bool)
    mask[rng.permutation(n_voters)[:int(round(share * n_voters))]] = True
    return mask


# ---------------------------------------------------------------------------------------------- answers

def tie_margin(truth_values, crowd_noise: float) -> float:
    """The perceived difference under which a careful voter answers "equal": set so that 13% of careful votes
    on random pairs are ties, from the spread of perceived differences."""
    return _normal_quantile(0.5 + TIE_SHARE / 2) * math.sqrt(2 * np.var(truth_values) + crowd_noise ** 2)


def careful_choices(perceived, margin: float) -> np.ndarray:
    """A careful voter's answer to each perceived difference (left truth - right truth + crowd noise)."""
    return np.where(np.abs(perceived) < margin, "equal", np.where(perceived > 0, "left", "right"))


def careless_choices(rng, m: int) -> np.ndarray:
    """m answers at random, ties as often as among careful votes."""
    return np.asarray(["left", "right", "equal"], dtype=object)[
        rng.choice(3, size=m, p=[(1 - TIE_SHARE) / 2, (1 - TIE_SHARE) / 2, TIE_SHARE])]


def _normal_quantile(p: float) -> float:
    from scipy.stats import norm
    return float(norm.ppf(p))
