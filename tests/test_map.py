"""`perceptions map`: panels per city, points and hexagons, clear errors without coordinates."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from perceptions.cli import main
from perceptions.errors import PerceptionsError
from perceptions.predict.maps import haversine_km, panel_groups, plot_score_map
from perceptions.predict.writers import write_table


def _predictions(seed=0):
    rng = np.random.default_rng(seed)
    belo = pd.DataFrame({"lat": -19.9 + rng.normal(0, 0.03, 60), "lon": -43.95 + rng.normal(0, 0.03, 60),
                         "city": "BeloHorizonte"})
    boston = pd.DataFrame({"lat": 42.36 + rng.normal(0, 0.02, 40), "lon": -71.06 + rng.normal(0, 0.02, 40),
                           "city": ""})
    df = pd.concat([belo, boston], ignore_index=True)
    df.insert(0, "path", [f"img{i}.jpg" for i in range(len(df))])
    df["location_id"] = ""
    df["safe_score"] = rng.uniform(1, 10, len(df)).round(4)
    df["safe_decile"] = rng.integers(1, 11, len(df))
    return df


def test_haversine_known_distance():
    # London -> Paris is about 344 km.
    assert haversine_km(51.5074, -0.1278, 48.8566, 2.3522) == pytest.approx(344, abs=3)


def test_far_apart_cities_get_a_panel_each_and_near_ones_share():
    df = _predictions()
    panels = panel_groups(df)
    assert [len(rows) for _, rows in panels] == [60, 40]
    assert panels[0][0] == "BeloHorizonte"
    assert "N" in panels[1][0] and "W" in panels[1][0]  # unnamed points are labelled by where they are
    near = df.assign(city=["A"] * 30 + ["B"] * 30 + [""] * 40)  # A and B: the same area, two names
    assert sorted(len(rows) for _, rows in panel_groups(near)) == [40, 60]


@pytest.mark.parametrize("hexbin", [False, True])
def test_plot_writes_a_picture(tmp_path, hexbin):
    out = tmp_path / "map.png"
    summary = plot_score_map(_predictions(), "safe", out, hexbin=hexbin)
    assert summary["points"] == 100 and summary["panels"] == 2
    with Image.open(out) as img:
        assert img.size[0] > 400 and img.size[1] > 200


def test_rows_without_coordinates_are_left_out_and_none_is_an_error(tmp_path):
    df = _predictions()
    df.loc[:9, ["lat", "lon"]] = np.nan
    assert plot_score_map(df, "safe", tmp_path / "m.png")["without_coordinates"] == 10
    df[["lat", "lon"]] = np.nan
    with pytest.raises(PerceptionsError, match="coordinates"):
        plot_score_map(df, "safe", tmp_path / "m2.png")
    with pytest.raises(PerceptionsError, match="no lively_score"):
        plot_score_map(_predictions(), "lively", tmp_path / "m3.png")


@pytest.mark.parametrize("suffix", [".csv", ".geojson", ".parquet"])
def test_map_command_reads_every_predict_format(tmp_path, suffix, capsys):
    table = tmp_path / f"pred{suffix}"
    write_table(_predictions(), table)
    out = tmp_path / "map.png"
    assert main(["map", str(table), "--study", "safety", "--out", str(out), "--hex"]) == 0
    assert out.stat().st_size > 0 and "2 panel(s)" in capsys.readouterr().out
    assert main(["map", str(table), "--out", str(out)]) == 2  # never overwrites silently
    assert "already exists" in capsys.readouterr().err


def test_map_command_without_coordinates_is_one_line(tmp_path, capsys):
    df = _predictions().assign(lat=np.nan, lon=np.nan)
    table = tmp_path / "pred.csv"
    write_table(df, table)
    assert main(["map", str(table), "--out", str(tmp_path / "m.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("perceptions map: error:") and "coordinates" in err and "\n" not in err
