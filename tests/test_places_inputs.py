"""`perceptions predict` with metadata tables (CSV, Parquet, GeoJSON, GeoPackage) and EXIF GPS: locations,
coordinate checks, carried columns and bad tables, with real files and the real geo libraries."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from perceptions.cli import main
from perceptions.places.exif import exif_latlon, gps_ifd
from perceptions.places.tables import read_table
from perceptions.predict.writers import read_predictions
from predict_helpers import build_tiny_package, street_picture

N = 6
LATS = [48.85 + i / 1000 for i in range(N)]
LONS = [2.35 + i / 1000 for i in range(N)]


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return build_tiny_package(tmp_path_factory.mktemp("pkg") / "model")


@pytest.fixture()
def photos(tmp_path):
    """N plain-named JPEGs (no Place Pulse names, no EXIF) in photos/."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(N):
        street_picture(i).save(folder / f"img_{i}.jpg", quality=90)
    return folder


def metadata(n=N) -> pd.DataFrame:
    return pd.DataFrame({"filename": [f"img_{i}.jpg" for i in range(n)], "latitude": LATS[:n],
                         "lng": LONS[:n], "heading": [10.0 * i for i in range(n)],
                         "pano_id": [f"P{i:03d}" for i in range(n)], "captured_at": ["2024-05-01"] * n,
                         "street": [f"Rue {i}" for i in range(n)]})


def predict(package, *args):
    return main(["predict", *map(str, args), "--model", str(package), "--workers", "0", "--no-progress"])


def write_table(df: pd.DataFrame, path):
    import geopandas as gpd

    suffix = path.suffix
    if suffix == ".csv":
        df.to_csv(path, index=False)
    elif suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:  # a point geometry instead of the coordinate columns
        gdf = gpd.GeoDataFrame(df.drop(columns=["latitude", "lng"]),
                               geometry=gpd.points_from_xy(df["lng"], df["latitude"]), crs="EPSG:4326")
        gdf.to_file(path, driver="GPKG" if suffix == ".gpkg" else "GeoJSON")


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".geojson", ".gpkg"])
def test_a_table_in_each_format_gives_coordinates_and_carries_columns(package, photos, tmp_path, suffix, capsys):
    table = tmp_path / f"meta{suffix}"
    write_table(metadata(), table)
    out = tmp_path / "pred.csv"
    assert predict(package, table, "--images", photos, "--out", out) == 0
    line = capsys.readouterr().out
    assert f"{N} with coordinates ({N} from the table)" in line
    df = read_predictions(out)
    assert len(df) == N
    np.testing.assert_allclose(df["lat"], LATS, atol=1e-9)
    np.testing.assert_allclose(df["lon"], LONS, atol=1e-9)
    for column in ("heading", "pano_id", "captured_at", "street", "filename", "safe_score", "safe_decile"):
        assert column in df.columns, column
    assert list(df["street"]) == [f"Rue {i}" for i in range(N)]
    assert list(df["pano_id"]) == [f"P{i:03d}" for i in range(N)]


def test_a_geometry_in_another_crs_is_transformed_to_wgs84(tmp_path):
    import geopandas as gpd

    df = metadata(2)
    gdf = gpd.GeoDataFrame(df.drop(columns=["latitude", "lng"]),
                           geometry=gpd.points_from_xy(df["lng"], df["latitude"]), crs="EPSG:4326")
    gdf.to_crs("EPSG:2154").to_file(tmp_path / "lambert.gpkg", driver="GPKG")  # Lambert-93, metres
    rows, _ = read_table(tmp_path / "lambert.gpkg")
    np.testing.assert_allclose(rows["lat"], LATS[:2], atol=1e-7)
    np.testing.assert_allclose(rows["lon"], LONS[:2], atol=1e-7)


def test_paths_are_relative_to_the_table_and_columns_can_be_named(package, photos, tmp_path):
    table = photos / "list.csv"
    pd.DataFrame({"picture": [f"img_{i}.jpg" for i in range(N)], "northing": LATS, "easting": LONS,
                  "note": list("abcdef")}).to_csv(table, index=False)
    out = tmp_path / "pred.parquet"
    assert predict(package, table, "--path-col", "picture", "--lat-col", "northing", "--lon-col", "easting",
                   "--out", out) == 0
    df = pd.read_parquet(out)
    np.testing.assert_allclose(df["lat"], LATS)
    assert list(df["note"]) == list("abcdef")


def test_bad_coordinates_are_scored_with_an_empty_location_and_counted(package, photos, tmp_path, capsys):
    df = metadata()
    df.loc[1, "latitude"] = 91.0       # out of range
    df.loc[2, "lng"] = -200.0          # out of range
    df.loc[3, "latitude"] = np.nan     # missing
    df["lng"] = df["lng"].astype(object)
    df.loc[4, "lng"] = "east"          # not a number
    df.to_csv(tmp_path / "meta.csv", index=False)
    out = tmp_path / "pred.csv"
    assert predict(package, tmp_path / "meta.csv", "--images", photos, "--out", out) == 0
    line = capsys.readouterr().out
    assert "2 with coordinates" in line and "4 without a location, 2 out of range" in line
    got = read_predictions(out)
    assert len(got) == N and got["safe_score"].notna().all()
    assert got["lat"].isna().tolist() == [False, True, True, True, True, False]


def test_exif_gps_is_read_and_wins_over_a_place_pulse_name(package, tmp_path, capsys):
    folder = tmp_path / "phone"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x8825] = gps_ifd(-33.8688, 151.2093)
    street_picture(1).save(folder / "IMG_0001.jpg", exif=exif)
    street_picture(2).save(folder / "48.000000_2.000000_0123456789abcdef01234567_Paris.jpg", exif=exif)
    street_picture(3).save(folder / "IMG_0003.jpg")  # no location at all
    lat, lon = exif_latlon(folder / "IMG_0001.jpg")
    assert math.isclose(lat, -33.8688, abs_tol=1e-6) and math.isclose(lon, 151.2093, abs_tol=1e-6)
    out = tmp_path / "pred.csv"
    assert predict(package, folder, "--out", out) == 0
    assert "2 with coordinates (2 from EXIF)" in capsys.readouterr().out
    df = read_predictions(out).set_index(read_predictions(out)["path"].str.rsplit("/", n=1).str[-1])
    assert math.isclose(df.loc["IMG_0001.jpg", "lat"], -33.8688, abs_tol=1e-6)
    assert math.isclose(df.loc["48.000000_2.000000_0123456789abcdef01234567_Paris.jpg", "lat"], -33.8688,
                        abs_tol=1e-6)
    assert df.loc["48.000000_2.000000_0123456789abcdef01234567_Paris.jpg", "city"] == "Paris"
    assert np.isnan(df.loc["IMG_0003.jpg", "lat"])


@pytest.mark.parametrize("columns, expected", [
    ({"a": [1], "b": [2]}, "no image path column found"),
    ({"path": ["x.jpg"], "lat": [1.0]}, "found a latitude column but no longitude column"),
])
def test_a_table_without_recognisable_columns_is_one_line(package, tmp_path, capsys, columns, expected):
    pd.DataFrame(columns).to_parquet(tmp_path / "bad.parquet")
    assert predict(package, tmp_path / "bad.parquet", "--out", tmp_path / "p.csv") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and "bad.parquet" in err and "it has:" in err
    assert "--" in err  # names the options


def test_a_named_column_that_is_missing_is_one_line(package, photos, tmp_path, capsys):
    write_table(metadata(), tmp_path / "meta.csv")
    assert predict(package, tmp_path / "meta.csv", "--lat-col", "Y_WGS", "--out", tmp_path / "p.csv") == 2
    err = capsys.readouterr().err.strip()
    assert "no column 'Y_WGS' (--lat-col)" in err and "latitude" in err


def test_a_one_column_csv_is_still_a_path_list(package, photos, tmp_path):
    (photos / "list.csv").write_text("path\n" + "".join(f"img_{i}.jpg\n" for i in range(N)))
    out = tmp_path / "pred.csv"
    assert predict(package, photos / "list.csv", "--out", out) == 0
    df = read_predictions(out)
    assert len(df) == N and df["lat"].isna().all()
