"""Label table: join and report, splits (leakage, determinism, stability as images come and go), the max-images
sample, scaling and deciles, oversampling."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perceptions.data.labels import (Scaling, build_labels, oversample_index, sample_images, split_from_spec,
                                     split_labels, split_spec)
from perceptions.data.placepulse import list_images, read_qscores
from perceptions.errors import PerceptionsError

FIXTURES = Path(__file__).parent / "fixtures" / "placepulse"


def make_table(n: int = 400, cities=("Rome", "Oslo", "Lima", "Pune", "Kyiv"), seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({
        "path": [f"img/{i:05d}.jpg" for i in range(n)],
        "location_id": [f"{i:024x}" for i in range(n)],
        "city": [cities[i % len(cities)] for i in range(n)],
        "lat": rng.uniform(-50, 50, n), "lon": rng.uniform(-50, 50, n),
        "safe": rng.normal(25, 4, n), "lively": rng.normal(25, 4, n),
    })
    table.loc[rng.random(n) < 0.3, "lively"] = np.nan
    return table


# ---------------------------------------------------------------------------------------------- build_labels

def test_build_labels_on_the_real_fixture():
    images, qscores = list_images(FIXTURES / "images"), read_qscores(FIXTURES / "qscores.tsv")
    table, report = build_labels(images, qscores, ["safe", "beautiful"])
    assert list(table.columns) == ["path", "location_id", "city", "lat", "lon", "safe", "beautiful"]
    assert len(table) == 2 and table["beautiful"].isna().all()
    assert table.set_index("location_id").loc["513d61e8fdc9f03587003edd", "safe"] == pytest.approx(16.8931801005)
    assert report["images_without_scores"] == 0 and report["scores_without_images"] == 0
    assert report["message"] == "0 images without scores, 0 scores without images"


def test_build_labels_counts_what_does_not_join():
    images = pd.DataFrame({"path": ["a.jpg", "b.jpg", "holiday.jpg"], "location_id": ["A", "B", None],
                           "city": ["X", "X", None], "lat": [1.0, 2.0, np.nan], "lon": [1.0, 2.0, np.nan]})
    qscores = pd.DataFrame({"location_id": ["A", "A", "C", "D", "B"],
                            "study": ["safe", "lively", "safe", "lively", "wealthy"],
                            "trueskill.score": [20.0, 30.0, 25.0, 26.0, 27.0]})
    table, report = build_labels(images, qscores, "safe,lively")
    assert table["path"].tolist() == ["a.jpg"]
    assert table[["safe", "lively"]].iloc[0].tolist() == [20.0, 30.0]
    # b.jpg is scored only for a study not asked for; holiday.jpg has no location id.
    assert report["images_without_scores"] == 2
    assert report["scores_without_images"] == 2  # C (safe) and D (lively)
    assert report["message"] == "2 images without scores, 2 scores without images"


def test_build_labels_needs_the_score_column():
    images = list_images(FIXTURES / "images")
    with pytest.raises(PerceptionsError, match="qscore"):
        build_labels(images, read_qscores(FIXTURES / "qscores.tsv"), "safe", score_column="qscore")


# ---------------------------------------------------------------------------------------------- splits

@pytest.mark.parametrize("method", ["random", "city"])
def test_splits_cover_every_row_once_and_are_deterministic(method):
    table = make_table()
    split = split_labels(table, method, seed=3)
    assert set(split) == {"train", "val", "test"} and len(split) == len(table)
    assert split.index.equals(table.index)
    assert split.equals(split_labels(table, method, seed=3))
    shuffled = table.sample(frac=1, random_state=1)
    again = split_labels(shuffled, method, seed=3)
    assert again.reindex(table.index).equals(split)  # row order does not matter
    assert not split.equals(split_labels(table, method, seed=4))


def test_random_split_fractions_and_no_location_in_two_splits():
    table = make_table(10_000)
    # Two files of the same place must land in the same split.
    table = pd.concat([table, table.iloc[:50].assign(path=lambda d: d["path"] + ".copy.jpg")], ignore_index=True)
    split = split_labels(table, "random", seed=0, val_frac=0.1, test_frac=0.2)
    per_location = split.groupby(table["location_id"]).nunique()
    assert (per_location == 1).all()
    shares = split.groupby(table["location_id"]).first().value_counts(normalize=True)
    assert shares["test"] == pytest.approx(0.2, abs=0.01) and shares["val"] == pytest.approx(0.1, abs=0.01)


def grow_and_shrink(table: pd.DataFrame, seed: int = 5, new_city: str | None = None) -> pd.DataFrame:
    """`table` after a user's clean-up: a quarter of the rows deleted, a tenth renamed, new images added."""
    rng = np.random.default_rng(seed)
    kept = table[rng.random(len(table)) >= 0.25].copy()
    renamed = rng.random(len(kept)) < 0.1
    kept.loc[renamed, "path"] = "renamed/" + kept.loc[renamed, "path"]
    fresh = make_table(len(table) // 2, seed=seed + 1)
    fresh["location_id"] = [f"new{i:021x}" for i in range(len(fresh))]
    fresh["path"] = "new/" + fresh["path"]
    if new_city:
        fresh["city"] = new_city
    return pd.concat([fresh, kept]).reset_index(drop=True)


def test_a_location_keeps_its_split_when_images_come_and_go():
    table = make_table(2000)
    before = pd.Series(split_labels(table, "random", seed=3).to_numpy(), index=table["location_id"])
    changed = grow_and_shrink(table)
    after = pd.Series(split_labels(changed, "random", seed=3).to_numpy(), index=changed["location_id"])
    old = after.index.isin(before.index)
    assert old.sum() > 1000 and (~old).sum() == 1000
    assert (after[old] == before.reindex(after.index[old])).all()
    # the new images are split in the requested shares too
    shares = after[~old].value_counts(normalize=True)
    assert shares["test"] == pytest.approx(0.2, abs=0.05) and shares["val"] == pytest.approx(0.1, abs=0.04)


def test_split_fractions_on_10000_ids_and_another_seed_moves_them():
    table = make_table(10_000)
    for val_frac, test_frac in ((0.1, 0.2), (0.05, 0.5), (0.3, 0.0)):
        split = split_labels(table, "random", seed=7, val_frac=val_frac, test_frac=test_frac)
        assert (split == "test").mean() == pytest.approx(test_frac, abs=0.01)
        assert (split == "val").mean() == pytest.approx(val_frac, abs=0.01)
    a, b = split_labels(table, "random", seed=7), split_labels(table, "random", seed=8)
    assert (a != b).mean() > 0.3          # about 1 - (0.2^2 + 0.1^2 + 0.7^2) = 0.46 of them move
    assert (b == "test").mean() == pytest.approx(0.2, abs=0.01)


def test_city_split_rederives_from_the_recorded_test_cities_after_a_new_city_comes():
    table = make_table(3000, cities=tuple(f"C{i}" for i in range(8)))
    spec = split_spec(table, "city", seed=2, val_frac=0.1, test_frac=0.25)
    assert spec["method"] == "city" and spec["seed"] == 2 and spec["hash"] == "blake2b-64"
    assert spec["test_cities"] and set(spec["test_cities"]) < set(table["city"])
    split = split_from_spec(table, spec)
    assert split.equals(split_labels(table, "city", seed=2, val_frac=0.1, test_frac=0.25))
    assert set(table.loc[split == "test", "city"]) == set(spec["test_cities"])
    assert (split == "val").mean() == pytest.approx(0.1, abs=0.02)
    # a new, large city arrives and some images go: the recorded test cities re-derive the old split exactly
    changed = grow_and_shrink(table, new_city="Newtown")
    again = pd.Series(split_from_spec(changed, spec).to_numpy(), index=changed["location_id"])
    before = pd.Series(split.to_numpy(), index=table["location_id"])
    old = again.index.isin(before.index)
    assert (again[old] == before.reindex(again.index[old])).all()
    new_city = (changed["city"] == "Newtown").to_numpy()
    assert not (again[new_city] == "test").any()                   # never test: it was not held out
    for city, parts in pd.Series(again.to_numpy()).groupby(changed["city"].to_numpy()):
        assert ("test" in set(parts)) == (set(parts) == {"test"})  # whole cities in or out of test


def test_a_package_split_without_a_hash_is_refused():
    table = make_table(100)
    with pytest.raises(PerceptionsError, match="old split.*retrain.*--split all"):
        split_from_spec(table, {"method": "random", "seed": 0, "val_frac": 0.1, "test_frac": 0.2})
    spec = split_spec(table, "random", seed=1)
    assert split_from_spec(table, spec).equals(split_labels(table, "random", seed=1))
    assert set(spec) == {"method", "seed", "val_frac", "test_frac", "hash"}


def test_max_images_is_a_stable_seeded_sample_of_locations():
    table = make_table(2000)
    table = table.sort_values("lat").reset_index(drop=True)     # sorted paths put one region first
    sample = sample_images(table, 200, seed=0)
    assert len(sample) == 200 and sample["path"].is_unique
    assert sample["lat"].min() < -40 and sample["lat"].max() > 40  # spread over the table, not its first rows
    assert set(sample["location_id"]) != set(sample_images(table, 200, seed=1)["location_id"])
    # images outside the sample come and go: the sample stays
    others = table[~table["location_id"].isin(sample["location_id"])]
    smaller = pd.concat([sample, others.iloc[::3]]).sample(frac=1, random_state=0)
    assert set(sample_images(smaller, 200, seed=0)["location_id"]) == set(sample["location_id"])
    assert sample_images(table, 5000, seed=0) is table


def test_city_split_holds_whole_cities_out():
    table = make_table(600, cities=tuple(f"C{i}" for i in range(10)))
    split = split_labels(table, "city", seed=1, val_frac=0.1, test_frac=0.2)
    test_cities = set(table.loc[split == "test", "city"])
    other_cities = set(table.loc[split != "test", "city"])
    assert test_cities and not test_cities & other_cities
    assert (split == "test").mean() == pytest.approx(0.2, abs=0.05)
    assert (split == "val").mean() == pytest.approx(0.1, abs=0.02)


def test_city_split_needs_two_cities_and_sane_fractions():
    with pytest.raises(PerceptionsError, match="at least 2 cities"):
        split_labels(make_table(50, cities=("Rome",)), "city")
    with pytest.raises(PerceptionsError, match="fractions"):
        split_labels(make_table(50), "random", val_frac=0.5, test_frac=0.6)
    with pytest.raises(PerceptionsError, match="unknown split"):
        split_labels(make_table(50), "alphabetical")


# ---------------------------------------------------------------------------------------------- scaling

def test_scaling_is_fitted_on_train_only_and_clipped():
    table = make_table()
    split = split_labels(table, "random", seed=0)
    train = table[split == "train"]
    scaling = Scaling.fit(train, ["safe", "lively"])
    assert scaling.scale(train["safe"].min(), "safe") == pytest.approx(1.0)
    assert scaling.scale(train["safe"].max(), "safe") == pytest.approx(10.0)
    scaled_all = scaling.scale(table["safe"].to_numpy(), "safe")
    assert scaled_all.min() >= 1.0 and scaled_all.max() <= 10.0
    assert scaling.scale(1e9, "safe") == 10.0 and scaling.scale(-1e9, "safe") == 1.0
    # The test rows were not used: refitting on everything gives a different scale.
    assert Scaling.fit(table, ["safe"]).params["safe"] != scaling.params["safe"]


def test_deciles_come_from_the_training_distribution():
    table = make_table(1000)
    scaling = Scaling.fit(table, ["safe", "lively"])
    deciles = scaling.decile(scaling.scale(table["safe"].to_numpy(), "safe"), "safe")
    assert deciles.min() == 1 and deciles.max() == 10
    assert np.all(np.bincount(deciles, minlength=11)[1:] == 100)
    lively = scaling.decile(scaling.scale(table["lively"].to_numpy(), "lively"), "lively")
    assert (lively[table["lively"].isna().to_numpy()] == 0).all()  # 0 marks a missing score
    assert scaling.decile(1.0, "safe") == 1 and scaling.decile(10.0, "safe") == 10


def test_scaling_round_trips_through_json_and_rejects_junk():
    scaling = Scaling.fit(make_table(), ["safe", "lively"])
    again = Scaling.from_dict(json.loads(json.dumps(scaling.to_dict())))
    assert again.params == scaling.params and again.studies == ["safe", "lively"]
    with pytest.raises(PerceptionsError, match="invalid score scaling"):
        Scaling.from_dict({"studies": {"safe": {"min": 0, "max": 1, "decile_edges": [1, 2]}}})
    with pytest.raises(PerceptionsError, match="no scaling for study"):
        scaling.scale(3.0, "boring")


def test_scaling_of_a_constant_study_is_the_middle():
    table = make_table(20).assign(safe=7.0)
    assert Scaling.fit(table, ["safe"]).scale(7.0, "safe") == 5.5


# ---------------------------------------------------------------------------------------------- oversampling

def _bin_counts(table, index, study):
    """(natural counts, counts in `index`) of the rounded 1..10 bins of min-max scaled scores, as the original
    project binned them (computed here by hand, not with the library's helper)."""
    raw = table[study].to_numpy(dtype=float)
    ok = np.isfinite(raw)
    lo, hi = raw[ok].min(), raw[ok].max()
    bins = np.full(len(raw), -1)
    bins[ok] = np.rint(1 + 9 * (raw[ok] - lo) / (hi - lo)).astype(int)
    natural = np.bincount(bins[ok], minlength=11)[1:]
    picked = bins[index]
    return natural, np.bincount(picked[picked > 0], minlength=11)[1:]


def test_oversampling_balances_the_score_bins_of_one_study():
    rng = np.random.default_rng(0)
    table = make_table(1000)
    table["safe"] = rng.exponential(5, len(table)).round(0)  # skewed, with tied scores: a long rare tail
    index = oversample_index(table, ["safe"], seed=0)
    natural, counts = _bin_counts(table, index, "safe")
    assert natural.max() > 20 * natural[natural > 0].min()   # the tail really is rare
    assert (counts[natural > 0] == natural.max()).all()      # every bin as large as the most crowded one
    assert set(index) == set(range(len(table)))  # nothing dropped
    assert np.array_equal(index, oversample_index(table, ["safe"], seed=0))
    assert not np.array_equal(index, oversample_index(table, ["safe"], seed=1))


def test_oversampling_several_studies_balances_each():
    table = make_table(1000)
    table.loc[:9, ["safe", "lively"]] = np.nan  # rows with no score at all are kept once
    index = oversample_index(table, ["safe", "lively"], seed=0)
    assert set(index) == set(range(len(table)))
    assert all(np.count_nonzero(index == i) == 1 for i in range(10))
    for name in ("safe", "lively"):
        natural, counts = _bin_counts(table, index, name)
        # This study's own part tops every bin up to its most crowded one; the other study's part adds more.
        assert (counts[natural > 0] >= natural.max()).all()
        assert counts[natural > 0].min() > 10 * natural[natural > 0].min()
