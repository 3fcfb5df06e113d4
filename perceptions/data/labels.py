"""The label table: images joined to their scores, splits, 1..10 scaling, deciles and oversampling.

- `build_labels` joins images to qscores rows by location id; one column per study holds the raw score
  (TrueSkill scale by default), NaN where the image has no score for that study. Images without any score and
  score rows without an image are counted in the report, never dropped silently.
- `split_labels` assigns train/val/test by location id (so two files of one place never straddle splits), by a
  keyed hash, so a location's split never moves when other images are added, removed or renamed: each location
  gets u = blake2b(f"{seed}:{location_id}") / 2**64 in [0, 1); `random`: test if u < test_frac, val if
  u < test_frac + val_frac, else train. `city` holds whole cities out for test (cities ordered by the hash of
  ("city", seed, name), the prefix closest to test_frac of the images) and puts the other cities' locations
  with u < val_frac / (1 - test_frac) in val. `split_spec` is what a run records (with the held-out cities) and
  `split_from_spec` rebuilds the split from it. `sample_images` is `--max-images`, a hashed sample too.
- `Scaling` is fitted on the training split only: min-max to 1..10 (clipped outside), and decile edges from the
  training distribution of the scaled scores.
- `oversample_index` balances the rounded 1..10 score bins in training, as the original project did, so the rare
  extremes of the scale are seen as often as the crowded middle. With several studies it cycles through them:
  the index is the concatenation of one bin-balanced index per study, shuffled (see its docstring).
"""
from __future__ import annotations

import hashlib
import logging

import numpy as np
import pandas as pd

from perceptions.errors import PerceptionsError
from perceptions.studies import parse_studies

log = logging.getLogger(__name__)

SCALE_LOW, SCALE_HIGH = 1.0, 10.0
SPLIT_NAMES = ("train", "val", "test")   # the parts a training run cuts its labelled images into
SPLIT_METHODS = ("random", "city")        # how: random locations, or whole cities held out
_UNKNOWN_CITY = "(unknown city)"
SPLIT_HASH = "blake2b-64"                # location u = blake2b(f"{seed}:{location_id}") / 2**64


def build_labels(images: pd.DataFrame, qscores: pd.DataFrame, studies, score_column: str = "trueskill.score"):
    """Join images to scores by location_id; returns (table, report). See the module docstring."""
    names = parse_studies(studies)
    for col in ("path", "location_id"):
        if col not in images.columns:
            raise PerceptionsError(f"image table lacks column {col!r}")
    for col in ("location_id", "study"):
        if col not in qscores.columns:
            raise PerceptionsError(f"scores table lacks column {col!r}")
    if score_column not in qscores.columns:
        have = [c for c in qscores.columns if "score" in c and c != "study"]
        raise PerceptionsError(f"scores have no column {score_column!r} (found: {', '.join(have) or 'none'})")

    scores = qscores[qscores["study"].isin(names)]
    wide = scores.pivot_table(index="location_id", columns="study", values=score_column, aggfunc="first",
                              dropna=False)
    wide = wide.reindex(columns=names)
    wide = wide[wide.notna().any(axis=1)]
    wide.columns.name = None

    base = images.copy()
    for col in ("city", "lat", "lon"):
        if col not in base.columns:
            base[col] = np.nan
    base = base[["path", "location_id", "city", "lat", "lon"]]
    keyed = base["location_id"].notna()
    table = base[keyed].merge(wide, left_on="location_id", right_index=True, how="inner")
    table = table.sort_values("path", kind="stable").reset_index(drop=True)

    image_ids = set(base.loc[keyed, "location_id"])
    rows_without_images = int((~scores["location_id"].isin(image_ids) & scores[score_column].notna()).sum())
    report = {
        "images": int(len(base)),
        "labelled_images": int(len(table)),
        "images_without_scores": int(len(base) - len(table)),
        "scores_without_images": rows_without_images,
    }
    report["message"] = (f"{report['images_without_scores']} images without scores, "
                         f"{report['scores_without_images']} scores without images")
    log.debug(report["message"])  # callers put a mismatch in their notes (training and evaluate print them)
    return table, report


def _check_fractions(val_frac: float, test_frac: float) -> None:
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise PerceptionsError(f"split fractions val={val_frac}, test={test_frac} must be >= 0 and sum below 1")


def keyed_uniform(keys, key: str) -> np.ndarray:
    """A number in [0, 1) per key, from blake2b of f"{key}:{k}" (SPLIT_HASH): the same key and name always
    give the same number, whatever other names exist."""
    scale = float(1 << 64)
    return np.array([int.from_bytes(hashlib.blake2b(f"{key}:{k}".encode(), digest_size=8).digest(), "big") / scale
                     for k in keys], dtype=float)


def _location_cities(table: pd.DataFrame) -> pd.Series:
    """Each location id's city (the first name in sorted order if its images disagree), indexed by location."""
    cities = pd.DataFrame({"location_id": table["location_id"].astype(str).to_numpy(),
                           "city": table["city"].fillna(_UNKNOWN_CITY).astype(str).to_numpy()})
    return cities.groupby("location_id")["city"].min()


def choose_test_cities(table: pd.DataFrame, seed: int = 0, test_frac: float = 0.2) -> list[str]:
    """The cities `--split city` holds out: cities ordered by the hash of ("city", seed, name), then the prefix
    whose image count is closest to test_frac of the images; at least one city, never all. Sorted by name.
    Which cities these are depends on every city's size, so a run records them (split_spec)."""
    if test_frac <= 0:
        return []
    city_of = _location_cities(table)
    images = table["location_id"].astype(str).map(city_of).value_counts()
    if len(images) < 2:
        raise PerceptionsError("a city split needs images from at least 2 cities; use --split random")
    names = images.index.to_numpy(dtype=object)
    order = names[np.lexsort((names, keyed_uniform(names, f"city:{seed}")))]
    cum = np.cumsum(images.reindex(order).to_numpy())
    k = 1 + int(np.argmin(np.abs(cum[:-1] - test_frac * len(table))))
    return sorted(str(c) for c in order[:k])


def split_labels(table: pd.DataFrame, method: str = "random", seed: int = 0, val_frac: float = 0.1,
                 test_frac: float = 0.2, test_cities=None) -> pd.Series:
    """'train' / 'val' / 'test' per row of `table`, by location id, that never moves: a location's split
    depends only on its own id, the seed and the fractions (see the module docstring). For `city`, pass the
    recorded `test_cities` to re-derive a run's split exactly; without them they are chosen here."""
    _check_fractions(val_frac, test_frac)
    if len(table) == 0:
        raise PerceptionsError("no labelled images to split")
    if method not in SPLIT_METHODS:
        raise PerceptionsError(f"unknown split {method!r}; expected random or city")
    group = table["location_id"].astype(str).to_numpy()
    locations = np.unique(group)
    u = keyed_uniform(locations, str(seed))
    if method == "random":
        names = np.where(u < test_frac, "test", np.where(u < test_frac + val_frac, "val", "train"))
    else:
        if test_cities is None:
            test_cities = choose_test_cities(table, seed, test_frac)
        held_out = _location_cities(table).reindex(locations).isin(set(map(str, test_cities))).to_numpy()
        # val: the same share of all images as --split random gives, drawn from the cities not held out.
        names = np.where(held_out, "test", np.where(u < val_frac / (1 - test_frac), "val", "train"))
    assign = dict(zip(locations.tolist(), names.tolist()))
    return pd.Series([assign[g] for g in group], index=table.index, name="split", dtype=object)


def split_spec(table: pd.DataFrame, method: str = "random", seed: int = 0, val_frac: float = 0.1,
               test_frac: float = 0.2) -> dict:
    """What a run records to re-derive its split anywhere: method, seed, fractions, the hash, and for `city`
    the held-out cities (so cities added later cannot move the old ones). `split_from_spec` reads it back."""
    _check_fractions(val_frac, test_frac)
    if method not in SPLIT_METHODS:
        raise PerceptionsError(f"unknown split {method!r}; expected random or city")
    spec = {"method": method, "seed": int(seed), "val_frac": float(val_frac), "test_frac": float(test_frac),
            "hash": SPLIT_HASH}
    if method == "city":
        spec["test_cities"] = choose_test_cities(table, seed, test_frac)
    return spec


def split_from_spec(table: pd.DataFrame, spec: dict) -> pd.Series:
    """The split a recorded `split_spec` gives on `table` (any images: gained, lost or renamed ones too)."""
    if spec.get("hash") != SPLIT_HASH:
        if "hash" not in spec:
            raise PerceptionsError("the model package records an old split (made before splits were hashed by "
                                   "location id), which cannot be rebuilt on this folder; retrain the model, or "
                                   "use --split all")
        raise PerceptionsError(f"the model package records a split hashed with {spec['hash']!r}; this version "
                               f"knows only {SPLIT_HASH!r}")
    try:
        method, seed = str(spec["method"]), int(spec["seed"])
        val_frac, test_frac = float(spec["val_frac"]), float(spec["test_frac"])
        test_cities = [str(c) for c in spec["test_cities"]] if method == "city" else None
    except (KeyError, TypeError, ValueError) as exc:
        raise PerceptionsError(f"invalid split spec in the model package ({exc!r}): {spec}") from None
    return split_labels(table, method, seed, val_frac, test_frac, test_cities=test_cities)


def sample_images(table: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """`--max-images N`: N rows of `table`, a seeded random sample of locations (those with the smallest hash
    of ("sample", seed, location id)), so it is stable as other images come and go. Rows keep their order."""
    if n is None or n >= len(table):
        return table
    ids = table["location_id"].astype(str).to_numpy()
    rank = keyed_uniform(ids, f"sample:{seed}")
    keep = np.lexsort((table["path"].astype(str).to_numpy(), ids, rank))[:int(n)]
    return table.iloc[np.sort(keep)].reset_index(drop=True)


class Scaling:
    """Min-max to 1..10 and decile edges per study, fitted on the training split only."""

    def __init__(self, params: dict):
        self.params = params  # study -> {"min", "max", "decile_edges": 9 floats}

    @property
    def studies(self) -> list[str]:
        return list(self.params)

    @classmethod
    def fit(cls, train_table: pd.DataFrame, studies) -> "Scaling":
        params = {}
        for name in parse_studies(studies):
            if name not in train_table.columns:
                raise PerceptionsError(f"training table has no column for study {name!r}")
            raw = pd.to_numeric(train_table[name], errors="coerce").to_numpy(dtype=float)
            raw = raw[np.isfinite(raw)]
            if raw.size == 0:
                raise PerceptionsError(f"no training scores for study {name!r}")
            lo, hi = float(raw.min()), float(raw.max())
            params[name] = {"min": lo, "max": hi}
            scaled = cls(params).scale(raw, name)
            params[name]["decile_edges"] = [float(e) for e in np.quantile(scaled, np.arange(1, 10) / 10)]
        return cls(params)

    def _get(self, study_name: str) -> dict:
        if study_name not in self.params:
            raise PerceptionsError(f"no scaling for study {study_name!r}; fitted: {', '.join(self.params)}")
        return self.params[study_name]

    def scale(self, raw, study_name: str):
        """Raw scores -> 1..10 (clipped); NaN stays NaN. A study whose training scores were all equal maps to 5.5."""
        p = self._get(study_name)
        raw = np.asarray(raw, dtype=float)
        span = p["max"] - p["min"]
        if span > 0:
            out = SCALE_LOW + (SCALE_HIGH - SCALE_LOW) * (raw - p["min"]) / span
        else:
            out = np.where(np.isnan(raw), np.nan, (SCALE_LOW + SCALE_HIGH) / 2)
        out = np.clip(out, SCALE_LOW, SCALE_HIGH)
        return float(out) if out.ndim == 0 else out

    def decile(self, scaled, study_name: str):
        """Scaled scores -> deciles 1..10 of the training distribution; 0 marks a missing (NaN) score."""
        edges = np.asarray(self._get(study_name)["decile_edges"], dtype=float)
        scaled = np.asarray(scaled, dtype=float)
        out = np.searchsorted(edges, scaled, side="right") + 1
        out = np.where(np.isnan(scaled), 0, out).astype(int)
        return int(out) if out.ndim == 0 else out

    def to_dict(self) -> dict:
        return {"range": [SCALE_LOW, SCALE_HIGH],
                "studies": {k: {"min": v["min"], "max": v["max"], "decile_edges": list(v["decile_edges"])}
                            for k, v in self.params.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "Scaling":
        try:
            params = {}
            for name, v in d["studies"].items():
                edges = [float(e) for e in v["decile_edges"]]
                if len(edges) != 9:
                    raise ValueError("need 9 decile edges")
                params[str(name)] = {"min": float(v["min"]), "max": float(v["max"]), "decile_edges": edges}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PerceptionsError(f"invalid score scaling in model package: {exc}") from None
        return cls(params)


def _score_bins(raw: np.ndarray) -> np.ndarray:
    """Bins 1..10 of finite raw scores: Scaling's min-max 1..10 scale over these rows, rounded. Equal-width
    bins, so the extremes hold few images; quantile deciles would hold ~10% each and give oversampling nothing
    to do."""
    scaling = Scaling({"_": {"min": float(raw.min()), "max": float(raw.max())}})
    return np.rint(scaling.scale(raw, "_")).astype(np.int64)


def oversample_index(train_table: pd.DataFrame, studies, seed: int) -> np.ndarray:
    """Row positions into `train_table` in which every rounded 1..10 score bin of every study is equally
    represented.

    For each study (cycling through them), its scored rows are grouped by bin (`_score_bins`) and every bin is
    topped up to the size of the largest by drawing extra rows with replacement; every scored row appears at
    least once. A bin of a few extreme images is repeated many times: that is the point (the net sees the ends of
    the scale as often as the middle) and the risk (it may memorise those images). The per-study indexes are
    concatenated and shuffled, so the index has about (number of studies) x (bins) x (largest bin) entries, and
    any prefix of it is itself balanced in expectation (take a prefix for a shorter epoch). Rows with no score for
    any of `studies` appear once.
    """
    rng = np.random.default_rng(seed)
    names = parse_studies(studies)
    parts = []
    scored_any = np.zeros(len(train_table), dtype=bool)
    for name in names:
        if name not in train_table.columns:
            raise PerceptionsError(f"training table has no column for study {name!r}")
        raw = pd.to_numeric(train_table[name], errors="coerce").to_numpy(dtype=float)
        rows = np.flatnonzero(np.isfinite(raw))
        if rows.size == 0:
            continue
        scored_any[rows] = True
        bins = _score_bins(raw[rows])
        groups = [rows[bins == b] for b in range(1, 11) if np.any(bins == b)]
        target = max(len(g) for g in groups)
        for g in groups:
            parts.append(g)
            parts.append(rng.choice(g, size=target - len(g), replace=True))
    parts.append(np.flatnonzero(~scored_any))
    index = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)
    return rng.permutation(index)
