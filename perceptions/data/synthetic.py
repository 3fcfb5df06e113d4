"""The synthetic city: street scenes, crowd votes, TrueSkill scores and the truth behind them, in PP2 formats.

`generate_city(out, ...)` writes
  out/images/{lat}_{lon}_{location_id}_{City}.JPG   400x300 street scenes (see synthetic_scene.py)
  out/votes.tsv      site-export votes: _id, choice, left, right, study_id, timestamp, voter_uniqueid
  out/qscores.tsv    TrueSkill scores of those votes, computed by perceptions.data.scoring (PP2 layout)
  out/truth.csv      location_id, city, neighbourhood, lat, lon, light, the attributes, one column per study
  out/city.json      how the city was made: its arguments, the crowd and any voter subgroup, the vote summary
  out/voters.csv     voter_uniqueid, crowd: only with a voter subgroup (see perceptions/data/crowds.py)

Places. Each city has a profile of three neighbourhood factors, affluence A, density D and neglect N (its
neighbourhoods scatter around it), and its own odds of day, dusk, night and fog. A neighbourhood turns its
factors into a typical value (on the logit scale) of each attribute, e.g. green = 1.2A - 1.0D, decay =
1.4N - 0.8A; each image then draws its attributes around that typical value with a wide spread (logit sd
1.3), so attributes vary a lot within a neighbourhood yet differ between cities. Attributes are 0..1:
green, height, decay, graffiti, litter, road_width, road_damage, cars, people, shops, colour; plus light.

Truth. With every 0..1 attribute centred (x - 0.5; so "shops + 0.5" below is the plain share of shops),
dark = {day 0, dusk .35, fog .25, night 1}, gloom = {day 0, dusk .2, fog .6, night .8}, and [fog], [dusk]
indicators, the raw value of each study is
  safe       = -1.3 decay - 0.9 graffiti - 0.6 litter + 0.3 green - 0.3 road_damage + 0.4 shops - 1.2 dark
               + 0.5 people (1 - dark) - 0.8 dark decay
  lively     =  1.2 people + 1.5 shops + 0.3 cars + 0.5 colour + 0.5 height + 0.2 green - 1.0 gloom
               + 1.0 graffiti (shops + 0.5)
  beautiful  =  1.6 green + 0.9 colour - 0.7 decay - 0.5 litter - 0.4 graffiti - 0.6 height - 0.5 road_width
               + 0.6 [dusk] - 0.5 [fog] - 1.0 green decay
  wealthy    = -1.2 decay + 0.5 green - 0.4 litter - 0.5 graffiti - 1.1 road_damage + 0.5 height + 0.4 shops
               + 0.3 cars - 1.2 height decay
  boring     = -0.9 people - 0.5 colour - 1.2 shops - 0.7 graffiti - 0.5 green + 1.0 road_width + 0.3 height
               + 0.7 [fog] - 1.0 road_width shops
  depressing =  0.9 decay + 0.9 litter + 0.3 graffiti - 1.0 green - 0.4 colour - 0.3 people + 0.5 height
               + 0.6 gloom + 1.0 gloom decay
In words: safe is clean, tag-free, lit and busy by day, and darkness makes decay scarier; lively is people
and shops (graffiti adds to it on shopping streets) in good light; beautiful is green and colourful, and
greenery cannot redeem decay; wealthy is well kept (facades, roads), with clean towers rich and decayed
towers poor; boring is wide roads without shops, people, colour or tags; depressing is decay, litter and
grey without green, worst in gloom. The weights lean on what shows well at 224 px (light, greenery,
facades, roads, shop fronts) and less on small things (cars, single people).
and the true value is (raw - centre) / scale (fixed constants in _TRUTH_SCALE, which put the default city
near mean 0, sd 1) plus idiosyncratic noise N(0, 0.2^2), something about the place no attribute captures.
These are the default crowd's formulas; `crowd="local"` swaps some weights for those of a crowd that weighs the
scene differently (green counts against safe, people and light count more, towers are admired; the full table
is in perceptions/data/crowds.py) and `subgroup`/`subgroup_share` let a share of the voters judge as another crowd.

Votes. For each study, every image appears `votes_per_image` times (3 or 4 times for 3.5, Place Pulse's
density): pairs come from shuffled copies of the image list. A careful voter sees the true difference plus
crowd noise N(0, crowd_noise^2) (Thurstone) and answers "equal" when the perceived difference is within a
margin set so that 13% of careful votes are ties, as in PP2; a careless voter (a small share of voters)
answers at random. Votes are ordered by timestamp, the order in which TrueSkill reads them.

Everything follows from `seed`: the same arguments give byte-identical files.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from perceptions.data import crowds
from perceptions.data.scene_canvas import LIGHTS
from perceptions.errors import PerceptionsError
from perceptions.files import atomic_path, write_json
from perceptions.studies import STUDY_NAMES, study

ATTRIBUTES = ("green", "height", "decay", "graffiti", "litter", "road_width", "road_damage", "cars", "people",
              "shops", "colour")
TIE_SHARE = crowds.TIE_SHARE
NEIGHBOURHOODS_PER_CITY = 6
JPEG_QUALITY = 90

# name, centre (lat, lon), affluence, density, neglect, colour taste, odds of (day, dusk, night, fog)
_CITY_PROFILES = (
    ("Alderbrook", 52.20, -1.30, 1.0, -0.5, -0.8, 0.3, (0.55, 0.15, 0.18, 0.12)),
    ("Brickport", 53.45, -2.60, -0.9, 0.2, 1.0, -0.6, (0.5, 0.15, 0.2, 0.15)),
    ("Midhaven", 51.75, 0.45, 0.2, 1.2, 0.0, 0.6, (0.5, 0.15, 0.25, 0.1)),
    ("Fogmere", 55.90, -4.20, 0.0, 0.0, 0.3, -1.0, (0.35, 0.1, 0.15, 0.4)),
    ("Solvista", 41.40, 2.15, 0.3, 0.4, -0.3, 1.5, (0.65, 0.2, 0.12, 0.03)),
    ("Ironvale", 50.10, 8.70, -0.4, 0.8, 0.6, -0.3, (0.5, 0.15, 0.2, 0.15)),
    ("Lindenfield", 48.20, 16.35, 0.6, -1.0, -0.4, 0.0, (0.55, 0.15, 0.18, 0.12)),
    ("Cobaltbay", 45.45, -73.60, 0.0, 0.6, 0.2, 0.5, (0.55, 0.15, 0.2, 0.1)),
)
# Logit of each attribute's neighbourhood mean: (bias, affluence, density, neglect); colour adds the city taste.
_ATTRIBUTE_LOGITS = {
    "green": (0.2, 1.2, -1.0, 0.0), "height": (-0.3, -0.3, 1.5, 0.0), "decay": (-0.3, -0.8, 0.0, 1.4),
    "graffiti": (-0.5, -0.6, 0.6, 1.0), "litter": (-0.4, -0.6, 0.4, 1.2), "road_width": (0.0, 0.3, 0.4, 0.0),
    "road_damage": (0.0, -0.7, 0.0, 1.0), "cars": (-0.2, 0.4, 0.8, 0.0), "people": (-0.2, 0.3, 1.2, 0.0),
    "shops": (-0.2, 0.0, 1.3, 0.0), "colour": (0.0, 0.5, 0.0, -0.4),
}
_IMAGE_SPREAD = 1.3          # logit sd of an image around its neighbourhood
_NEIGHBOURHOOD_SPREAD = 0.7  # sd of a neighbourhood's factors around its city's
_DARK = {"day": 0.0, "dusk": 0.35, "fog": 0.25, "night": 1.0}
_GLOOM = {"day": 0.0, "dusk": 0.2, "fog": 0.6, "night": 0.8}
# (centre, scale) of each raw study value: measured once on 20,000 default places, then fixed.
_TRUTH_SCALE = {"safe": (-0.305, 1.05), "lively": (-0.245, 0.941), "beautiful": (-0.016, 1.084),
                "wealthy": (-0.002, 0.933), "boring": (0.141, 0.638), "depressing": (0.175, 0.996)}
_IDIOSYNCRASY = 0.2


# ---------------------------------------------------------------------------------------------- places

def _city_profiles(n_cities: int) -> list[tuple]:
    """The first n profiles; past the eighth, profiles repeat under numbered names, a few degrees away."""
    out = []
    for k in range(n_cities):
        name, lat, lon, *rest = _CITY_PROFILES[k % len(_CITY_PROFILES)]
        rounds = k // len(_CITY_PROFILES)
        if rounds:
            name, lat, lon = f"{name}{rounds + 1}", lat + 3.0 * rounds, lon + 4.0 * rounds
        out.append((name, lat, lon, *rest))
    return out


def sample_places(n_images: int, n_cities: int, seed: int) -> pd.DataFrame:
    """One row per image: location_id, city, neighbourhood, lat, lon, light and the 0..1 attributes."""
    rng = np.random.default_rng([seed, 0])
    counts = np.full(n_cities, n_images // n_cities)
    counts[: n_images % n_cities] += 1
    frames = []
    for (name, lat, lon, aff, dens, negl, taste, light_odds), count in zip(_city_profiles(n_cities), counts):
        factors = np.array([aff, dens, negl]) + rng.normal(0, _NEIGHBOURHOOD_SPREAD, (NEIGHBOURHOODS_PER_CITY, 3))
        centres = np.array([lat, lon]) + rng.normal(0, 0.025, (NEIGHBOURHOODS_PER_CITY, 2))
        hood = rng.integers(NEIGHBOURHOODS_PER_CITY, size=count)
        frame = pd.DataFrame({"city": name, "neighbourhood": [f"{name}-{h + 1}" for h in hood]})
        where = centres[hood] + rng.normal(0, 0.004, (count, 2))
        frame["lat"], frame["lon"] = where[:, 0].round(6), where[:, 1].round(6)
        frame["light"] = np.asarray(LIGHTS, dtype=object)[rng.choice(len(LIGHTS), size=count, p=light_odds)]
        f = factors[hood]
        for attr in ATTRIBUTES:
            bias, wa, wd, wn = _ATTRIBUTE_LOGITS[attr]
            logit = bias + wa * f[:, 0] + wd * f[:, 1] + wn * f[:, 2] + (taste if attr == "colour" else 0.0)
            frame[attr] = 1 / (1 + np.exp(-(logit + rng.normal(0, _IMAGE_SPREAD, count))))
        frames.append(frame)
    places = pd.concat(frames, ignore_index=True)
    ids = set()
    location_ids = []
    while len(location_ids) < len(places):
        candidate = rng.bytes(12).hex()
        if candidate not in ids:
            ids.add(candidate)
            location_ids.append(candidate)
    places.insert(0, "location_id", location_ids)
    places[list(ATTRIBUTES)] = places[list(ATTRIBUTES)].round(4)
    return places


def raw_perceptions(places: pd.DataFrame, crowd: str = "default") -> pd.DataFrame:
    """The six study functions of the module docstring (with a crowd's changes, crowds.py), before centring,
    scaling and idiosyncrasy."""
    x = {a: places[a].to_numpy(float) - 0.5 for a in ATTRIBUTES}
    dark = places["light"].map(_DARK).to_numpy(float)
    gloom = places["light"].map(_GLOOM).to_numpy(float)
    fog = (places["light"] == "fog").to_numpy(float)
    dusk = (places["light"] == "dusk").to_numpy(float)
    raw = {
        "safe": -1.3 * x["decay"] - 0.9 * x["graffiti"] - 0.6 * x["litter"] + 0.3 * x["green"]
        - 0.3 * x["road_damage"] + 0.4 * x["shops"] - 1.2 * dark + 0.5 * x["people"] * (1 - dark)
        - 0.8 * dark * x["decay"],
        "lively": 1.2 * x["people"] + 1.5 * x["shops"] + 0.3 * x["cars"] + 0.5 * x["colour"] + 0.5 * x["height"]
        + 0.2 * x["green"] - 1.0 * gloom + 1.0 * x["graffiti"] * (x["shops"] + 0.5),
        "beautiful": 1.6 * x["green"] + 0.9 * x["colour"] - 0.7 * x["decay"] - 0.5 * x["litter"]
        - 0.4 * x["graffiti"] - 0.6 * x["height"] - 0.5 * x["road_width"] + 0.6 * dusk - 0.5 * fog
        - 1.0 * x["green"] * x["decay"],
        "wealthy": -1.2 * x["decay"] + 0.5 * x["green"] - 0.4 * x["litter"] - 0.5 * x["graffiti"]
        - 1.1 * x["road_damage"] + 0.5 * x["height"] + 0.4 * x["shops"] + 0.3 * x["cars"]
        - 1.2 * x["height"] * x["decay"],
        "boring": -0.9 * x["people"] - 0.5 * x["colour"] - 1.2 * x["shops"] - 0.7 * x["graffiti"]
        - 0.5 * x["green"] + 1.0 * x["road_width"] + 0.3 * x["height"] + 0.7 * fog
        - 1.0 * x["road_width"] * x["shops"],
        "depressing": 0.9 * x["decay"] + 0.9 * x["litter"] + 0.3 * x["graffiti"] - 1.0 * x["green"]
        - 0.4 * x["colour"] - 0.3 * x["people"] + 0.5 * x["height"] + 0.6 * gloom + 1.0 * gloom * x["decay"],
    }
    raw = crowds.adjust(raw, crowd, x, dark, gloom)
    return pd.DataFrame(raw, index=places.index)[list(STUDY_NAMES)]


def true_perceptions(places: pd.DataFrame, seed: int, crowd: str = "default") -> pd.DataFrame:
    """The true value of each study per place: scaled study function plus idiosyncratic noise (the same noise
    for every crowd: it belongs to the place)."""
    rng = np.random.default_rng([seed, 1])
    raw = raw_perceptions(places, crowd)
    noise = rng.normal(0, _IDIOSYNCRASY, raw.shape)
    truth = pd.DataFrame(index=places.index)
    scales = _TRUTH_SCALE if crowd == "default" else crowds.TRUTH_SCALES[crowd]
    for j, name in enumerate(STUDY_NAMES):
        centre, scale = scales[name]
        truth[name] = ((raw[name] - centre) / scale + noise[:, j]).round(4)
    return truth


# ---------------------------------------------------------------------------------------------- votes

def _pairs(n_images: int, appearances: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Random pairs in which every image appears `appearances` times (once fewer for one image if odd).

    A fractional `appearances` (e.g. 3.5, Place Pulse's density) gives round(appearances * n_images)
    appearances in all: every image appears floor(appearances) times, and a random subset once more. A whole
    number (int or float) draws exactly what it always did, so the default city is unchanged."""
    if float(appearances).is_integer():
        order = np.concatenate([rng.permutation(n_images) for _ in range(int(appearances))])
    else:
        full, extra = divmod(int(round(float(appearances) * n_images)), n_images)
        order = np.concatenate([rng.permutation(n_images) for _ in range(full)]
                               + [rng.permutation(n_images)[:extra]])
    if len(order) % 2:
        order = order[:-1]
    left, right = order[0::2].copy(), order[1::2].copy()
    # Pairs of an image with itself can only straddle two shuffles; swap partners with a neighbour pair.
    for i in np.flatnonzero(left == right):
        for j in ((i + 1) % len(left), (i - 1) % len(left)):
            if right[j] != left[i] and left[j] != right[i]:
                right[i], right[j] = right[j], right[i]
                break
    keep = left != right  # only possible with two images
    return left[keep], right[keep]


def simulate_votes(location_ids, truth: pd.DataFrame, votes_per_image: float, seed: int,
                   crowd_noise: float = 0.6, careless_share: float = 0.04, subgroup_truth=None,
                   subgroup_share: float = 0.0) -> pd.DataFrame:
    """Crowd votes for all six studies in the Place Pulse site-export layout, ordered by timestamp.

    votes_per_image: appearances of each image per study; a fraction such as 3.5 means 3 or 4 (see _pairs).
    subgroup_truth: another crowd's truth (rows as `truth`); a share `subgroup_share` of the voters answer from
    it instead (same pairs, same perception noise), and the votes gain a `crowd` column: "main" or "subgroup"."""
    rng = np.random.default_rng([seed, 2])
    ids = np.asarray(location_ids, dtype=object)
    n = len(ids)
    frames = []
    for name in STUDY_NAMES:
        t = truth[name].to_numpy(float)
        left, right = _pairs(n, votes_per_image, rng)
        noise = rng.normal(0, crowd_noise, len(left))
        choice = crowds.careful_choices(t[left] - t[right] + noise, crowds.tie_margin(t, crowd_noise))
        frame = pd.DataFrame({"left": ids[left], "right": ids[right], "choice": choice,
                              "study_id": study(name).study_id})
        if subgroup_truth is not None:
            s = subgroup_truth[name].to_numpy(float)
            frame["other"] = crowds.careful_choices(s[left] - s[right] + noise, crowds.tie_margin(s, crowd_noise))
        frames.append(frame)
    votes = pd.concat(frames, ignore_index=True)
    m = len(votes)
    n_voters = max(10, m // 15)  # PP2: ~15 votes per volunteer
    careless = rng.random(n_voters) < careless_share
    voter = rng.integers(n_voters, size=m)
    if subgroup_truth is not None:
        member = crowds.subgroup_voters(n_voters, subgroup_share, seed)[voter]
        votes["choice"] = np.where(member, votes.pop("other"), votes["choice"])
    sloppy = careless[voter]
    random_choice = crowds.careless_choices(rng, m)
    votes["choice"] = np.where(sloppy, random_choice, votes["choice"].to_numpy(dtype=object))
    voter_ids = np.array([rng.bytes(16).hex() for _ in range(n_voters)], dtype=object)
    votes["voter_uniqueid"] = voter_ids[voter]
    columns = ["_id", "choice", "left", "right", "study_id", "timestamp", "voter_uniqueid"]
    if subgroup_truth is not None:
        votes["crowd"] = np.where(member, "subgroup", "main")
        columns.append("crowd")
    # Seconds over 2013-06..2014-12, as the site collected them; sorted, so file order is time order.
    start = np.datetime64("2013-06-01T00:00:00")
    seconds = np.sort(rng.choice(int(5.0e7), size=m, replace=False))
    votes = votes.iloc[rng.permutation(m)].reset_index(drop=True)
    votes["timestamp"] = pd.to_datetime(start + seconds.astype("timedelta64[s]")).strftime("%Y-%m-%d %H:%M:%S")
    votes["_id"] = [rng.bytes(12).hex() for _ in range(m)]
    return votes[columns]


# ---------------------------------------------------------------------------------------------- the city

def image_name(row) -> str:
    return f"{row.lat:.6f}_{row.lon:.6f}_{row.location_id}_{row.city}.JPG"


def _check_arguments(out: Path, n_images, n_cities, votes_per_image, seed, overwrite) -> None:
    if int(n_images) < 2:
        raise PerceptionsError(f"--images must be at least 2 (pairs of images are compared), got {n_images}")
    if int(n_cities) < 1:
        raise PerceptionsError(f"--cities must be at least 1, got {n_cities}")
    if int(n_cities) > int(n_images):
        raise PerceptionsError(f"--cities ({n_cities}) cannot exceed --images ({n_images})")
    if not (math.isfinite(float(votes_per_image)) and float(votes_per_image) > 0):
        raise PerceptionsError(f"--votes-per-image must be a finite number above 0, got {votes_per_image}")
    if round(float(votes_per_image) * int(n_images)) < 2:
        raise PerceptionsError(f"--votes-per-image {votes_per_image} with --images {n_images} makes no pair to "
                               "compare; raise either")
    if int(seed) < 0:
        raise PerceptionsError(f"--seed must be 0 or more, got {seed}")
    if out.exists() and not out.is_dir():
        raise PerceptionsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise PerceptionsError(f"{out} exists and is not empty; pass --overwrite to replace a synthetic city "
                                   "there")
        if (out / "images").is_dir() and not (out / "truth.csv").is_file():
            raise PerceptionsError(f"{out}/images exists but {out}/truth.csv does not: not a synthetic city, so "
                                   "nothing there is replaced; choose another --out")


def _clear_previous(out: Path) -> None:
    """Remove what an earlier synth run wrote: the images its truth.csv names and its three tables. Nothing
    else in `out` is touched, so real images that were put there by hand survive an --overwrite."""
    truth_path = out / "truth.csv"
    if truth_path.is_file():
        try:
            previous = pd.read_csv(truth_path, dtype={"location_id": str, "city": str},
                                   usecols=["location_id", "city", "lat", "lon"])
        except (ValueError, pd.errors.ParserError) as exc:
            raise PerceptionsError(f"{truth_path}: cannot read the earlier synthetic city ({exc}); remove it "
                                   "by hand") from None
        for row in previous.itertuples(index=False):
            (out / "images" / image_name(row)).unlink(missing_ok=True)
    for name in ("votes.tsv", "qscores.tsv", "truth.csv", "city.json", "voters.csv"):
        (out / name).unlink(missing_ok=True)


def write_images(places: pd.DataFrame, folder: Path, seed: int, progress: bool | None = None) -> None:
    from perceptions.data.synthetic_draw import draw_images, scene_rows

    draw_images(scene_rows(places, ATTRIBUTES, image_name), folder, seed, JPEG_QUALITY, progress=progress)


def label_ceiling(qscores: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """Spearman correlation of each study's TrueSkill score with the truth: the best a label can be."""
    from scipy.stats import spearmanr
    out = {}
    for name in STUDY_NAMES:
        scored = qscores[qscores["study"] == name][["location_id", "trueskill.score"]]
        both = scored.merge(truth[["location_id", name]], on="location_id")
        varied = len(both) >= 3 and both["trueskill.score"].nunique() > 1  # else undefined (tiny cities)
        out[name] = round(float(spearmanr(both["trueskill.score"], both[name])[0]), 4) if varied else math.nan
    return out


def _votes_number(votes_per_image) -> int | float:
    """An int for a whole number (so 6 and 6.0 give the same city), else the float."""
    v = float(votes_per_image)
    return int(v) if v.is_integer() else v


def generate_city(out, n_images: int = 3000, n_cities: int = 4, votes_per_image: float = 6, seed: int = 0,
                  overwrite: bool = False, crowd_noise: float = 0.6, careless_share: float = 0.04,
                  progress: bool | None = None, crowd: str = "default", subgroup: str | None = None,
                  subgroup_share: float = 0.0) -> dict:
    """Write a synthetic city in PP2 formats to `out` (see the module docstring); return a summary."""
    from perceptions.data.placepulse import write_qscores
    from perceptions.data.scoring import score_votes

    out = Path(out)
    _check_arguments(out, n_images, n_cities, votes_per_image, seed, overwrite)
    if not crowd_noise >= 0:
        raise PerceptionsError(f"--crowd-noise must be 0 or more, got {crowd_noise}")
    if not 0 <= careless_share <= 1:
        raise PerceptionsError(f"the share of careless voters must be within 0..1, got {careless_share}")
    crowds.check_crowd(crowd)
    if subgroup is not None and crowds.check_crowd(subgroup, "--subgroup") == crowd:
        raise PerceptionsError(f"--subgroup {subgroup} is the main crowd (--crowd) already; choose another crowd")
    if not 0 <= subgroup_share <= 1:
        raise PerceptionsError(f"--subgroup-share must be within 0..1, got {subgroup_share}")
    started = time.perf_counter()
    if out.is_dir():
        _clear_previous(out)
    out.mkdir(parents=True, exist_ok=True)
    places = sample_places(int(n_images), int(n_cities), int(seed))
    truth = pd.concat([places, true_perceptions(places, int(seed), crowd)], axis=1)
    # truth.csv first: it names the images, so a run cut short can still be replaced with --overwrite.
    with atomic_path(out / "truth.csv") as tmp:
        truth.to_csv(tmp, index=False, float_format="%.6f")
    write_images(places, out / "images", int(seed), progress)
    images_done = time.perf_counter()

    other = None if subgroup is None else true_perceptions(places, int(seed), subgroup)
    votes = simulate_votes(places["location_id"], truth, _votes_number(votes_per_image), int(seed), crowd_noise,
                           careless_share, other, float(subgroup_share))
    if other is not None:
        voters = votes[["voter_uniqueid", "crowd"]].drop_duplicates("voter_uniqueid").sort_values("voter_uniqueid")
        with atomic_path(out / "voters.csv") as tmp:
            voters.replace({"crowd": {"main": crowd, "subgroup": subgroup}}).to_csv(tmp, index=False)
        votes = votes.drop(columns="crowd")
    with atomic_path(out / "votes.tsv") as tmp:
        votes.to_csv(tmp, sep="\t", index=False)
    named = votes.assign(study=votes["study_id"].map(lambda s: study(s).name))
    qscores = score_votes(named, "trueskill")
    write_qscores(qscores, out / "qscores.tsv")
    summary = {
        "out": str(out), "images": int(n_images), "cities": list(pd.unique(places["city"])),
        "votes": len(votes), "votes_per_image": _votes_number(votes_per_image),
        "tie_share": round(float((votes["choice"] == "equal").mean()), 4),
        "spearman_trueskill_truth": label_ceiling(qscores, truth),
    }
    # city.json holds no times, so the same arguments still give byte-identical files.
    write_json(out / "city.json", {
        "seed": int(seed), "crowd": crowd, "subgroup": subgroup,
        "subgroup_share": float(subgroup_share) if subgroup else 0.0, "subgroup_voters": None if other is None
        else int((voters["crowd"] == "subgroup").sum()), "crowd_noise": float(crowd_noise),
        "careless_share": float(careless_share), **{k: v for k, v in summary.items() if k != "out"}})
    return {**summary, "crowd": crowd, "subgroup": subgroup, "subgroup_share": float(subgroup_share),
            "seconds_images": round(images_done - started, 1), "seconds": round(time.perf_counter() - started, 1)}
