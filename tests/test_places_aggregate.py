"""`perceptions aggregate`: H3 hexagons checked against an independent h3 + pandas group-by, areas and streets
with real GeoPandas files, coverage flags, panoramas counted once, every output format, bad inputs."""
from __future__ import annotations

import warnings

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import LineString, box

from perceptions.cli import main
from perceptions.places.geofiles import read_layer

STUDIES = ("safe", "lively")


def predictions(n=400, seed=0) -> pd.DataFrame:
    """Made-up predictions around Lyon (45.76N 4.84E), a few without coordinates."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"path": [f"img_{i}.jpg" for i in range(n)],
                       "lat": 45.76 + rng.normal(0, 0.01, n), "lon": 4.84 + rng.normal(0, 0.01, n),
                       "location_id": "", "city": ""})
    for s in STUDIES:
        df[f"{s}_score"] = rng.uniform(1, 10, n)
    for s in STUDIES:
        df[f"{s}_decile"] = rng.integers(1, 11, n)
    df.loc[:4, ["lat", "lon"]] = np.nan
    return df


def aggregate(*args):
    return main(["aggregate", *map(str, args)])


@pytest.mark.parametrize("suffix", [".gpkg", ".parquet", ".geojson", ".csv"])
def test_h3_matches_an_independent_group_by(tmp_path, suffix, capsys):
    df = predictions()
    df.to_csv(tmp_path / "pred.csv", index=False)
    out = tmp_path / f"hex{suffix}"
    assert aggregate(tmp_path / "pred.csv", "--h3", 8, "--min-n", 5, "--out", out) == 0
    line = capsys.readouterr().out
    assert "395 images counted" in line and "5 images without coordinates left out" in line
    got = read_layer(out).set_index("h3")
    assert got.crs.to_epsg() == 4326

    located = df.dropna(subset=["lat", "lon"]).copy()
    located["cell"] = [h3.latlng_to_cell(a, b, 8) for a, b in zip(located["lat"], located["lon"])]
    expected = located.groupby("cell")
    assert got["n"].sum() == len(located)
    assert set(got.index) == set(expected.groups)
    n = expected.size()
    pd.testing.assert_series_equal(got["n"].astype(int).sort_index(), n.sort_index(), check_names=False)
    ok = n[n >= 5].index
    assert got.loc[ok, "sufficient"].astype(bool).all() and not got.loc[n[n < 5].index, "sufficient"].astype(bool).any()
    np.testing.assert_allclose(got.loc[ok, "safe_mean"], expected["safe_score"].mean()[ok])
    np.testing.assert_allclose(got.loc[ok, "lively_median"], expected["lively_score"].median()[ok])
    np.testing.assert_allclose(got.loc[ok, "safe_std"], expected["safe_score"].std()[ok])
    np.testing.assert_allclose(got.loc[ok, "safe_low_share"], expected["safe_decile"].apply(lambda d: (d <= 2).mean())[ok])
    np.testing.assert_allclose(got.loc[ok, "lively_high_share"],
                               expected["lively_decile"].apply(lambda d: (d >= 9).mean())[ok])
    assert got.loc[n[n < 5].index, "safe_mean"].isna().all()  # insufficient: the row stays, no summary
    # the hexagon of each row is its cell's boundary
    cell = ok[0]
    centre = got.loc[cell].geometry.centroid
    assert h3.latlng_to_cell(centre.y, centre.x, 8) == cell


def test_panorama_views_count_once(tmp_path):
    df = predictions(20)
    df.loc[:, ["lat", "lon"]] = [45.76, 4.84]
    df["level"] = ["view"] * 16 + ["panorama"] * 4
    df.to_parquet(tmp_path / "pred.parquet")
    assert aggregate(tmp_path / "pred.parquet", "--h3", 9, "--min-n", 1, "--out", tmp_path / "a.geojson") == 0
    got = read_layer(tmp_path / "a.geojson")
    assert got["n"].tolist() == [4]
    assert got["safe_mean"].iloc[0] == pytest.approx(df["safe_score"][16:].mean())


def test_areas_every_polygon_keeps_a_row(tmp_path, capsys):
    df = predictions()
    df.to_csv(tmp_path / "pred.csv", index=False)
    west, east, empty = box(4.70, 45.60, 4.84, 45.90), box(4.84, 45.60, 5.00, 45.90), box(10, 10, 11, 11)
    areas = gpd.GeoDataFrame({"district": ["west", "east", "nowhere"]}, geometry=[west, east, empty],
                             crs="EPSG:4326").to_crs("EPSG:3857")  # a projected CRS, transformed back
    areas.to_file(tmp_path / "areas.gpkg", driver="GPKG")
    out = tmp_path / "areas_out.gpkg"
    assert aggregate(tmp_path / "pred.csv", "--areas", tmp_path / "areas.gpkg", "--key", "district", "--out", out) == 0
    got = read_layer(out).set_index("district")
    located = df.dropna(subset=["lat", "lon"])
    assert got.loc["west", "n"] == (located["lon"] < 4.84).sum()
    assert got.loc["east", "n"] == (located["lon"] > 4.84).sum()
    assert got.loc["nowhere", "n"] == 0 and not got.loc["nowhere", "sufficient"]
    assert got.loc["west", "safe_mean"] == pytest.approx(located[located["lon"] < 4.84]["safe_score"].mean())


def test_streets_nearest_segment_within_metres(tmp_path):
    # Two east-west streets 200 m apart (in UTM 31N), images 10 m and 40 m north of the first
    lines = gpd.GeoDataFrame({"name": ["A", "B"]}, geometry=[LineString([(640000, 5070000), (641000, 5070000)]),
                                                             LineString([(640000, 5070200), (641000, 5070200)])],
                             crs="EPSG:32631")
    lines.to_file(tmp_path / "streets.geojson", driver="GeoJSON")  # written in WGS 84 by GeoJSON's rule
    pts = gpd.GeoSeries(gpd.points_from_xy([640100, 640200, 640300, 640500], [5070010, 5070010, 5070040, 5070195]),
                        crs="EPSG:32631").to_crs("EPSG:4326")
    df = predictions(4)
    df["lat"], df["lon"] = pts.y.to_numpy(), pts.x.to_numpy()
    df.to_csv(tmp_path / "pred.csv", index=False)
    out = tmp_path / "streets.csv"
    assert aggregate(tmp_path / "pred.csv", "--streets", tmp_path / "streets.geojson", "--key", "name",
                     "--max-distance", 25, "--min-n", 1, "--out", out) == 0
    got = pd.read_csv(out).set_index("name")
    assert got.loc["A", "n"] == 2 and got.loc["B", "n"] == 1  # the one 40 m away is left out


def test_bad_inputs_are_one_line_exit_2(tmp_path, capsys):
    predictions().to_csv(tmp_path / "pred.csv", index=False)
    areas = gpd.GeoDataFrame({"name": ["a"]}, geometry=[box(4, 45, 5, 46)], crs="EPSG:4326")
    areas.to_file(tmp_path / "areas.gpkg", driver="GPKG")
    no_crs = gpd.GeoDataFrame({"name": ["a"]}, geometry=[box(4, 45, 5, 46)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyogrio: 'crs' was not provided (the point of this file)
        no_crs.to_file(tmp_path / "nocrs.shp")
    cases = [(["--areas", tmp_path / "areas.gpkg", "--key", "district"], "no column 'district' (--key); it has: name"),
             (["--areas", tmp_path / "nocrs.shp", "--key", "name"], "has no CRS"),
             (["--areas", tmp_path / "areas.gpkg"], "--areas needs --key"),
             (["--h3", 16], "resolution from 0 to 15")]
    for i, (args, expected) in enumerate(cases):
        assert aggregate(tmp_path / "pred.csv", *args, "--out", tmp_path / f"o{i}.gpkg") == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, err
    (tmp_path / "taken.gpkg").write_text("mine")
    assert aggregate(tmp_path / "pred.csv", "--h3", 7, "--out", tmp_path / "taken.gpkg") == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "taken.gpkg").read_text() == "mine"
