"""What `predict` reads and writes: input discovery (`predict.inputs`) and output tables (`predict.writers`);
no model needed."""
import json
import os

import numpy as np
import pandas as pd
import pytest

from perceptions.errors import PerceptionsError
from perceptions.predict.inputs import discover_images, read_path_list
from perceptions.predict.writers import check_output, read_predictions, side_path, to_geojson, write_table


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_folders_are_searched_recursively_for_images_only(tmp_path):
    _touch(tmp_path / "b.JPG")
    _touch(tmp_path / "a.png")
    _touch(tmp_path / "notes.txt")
    _touch(tmp_path / "sub" / "deeper" / "c.jpeg")
    _touch(tmp_path / "sub" / "d.gif")
    found = discover_images([tmp_path])
    assert [os.path.relpath(p, tmp_path) for p in found] == ["a.png", "b.JPG", os.path.join("sub", "deeper",
                                                                                             "c.jpeg")]


def test_symlink_loop_does_not_hang(tmp_path):
    _touch(tmp_path / "a" / "x.jpg")
    os.symlink(tmp_path, tmp_path / "a" / "loop")
    os.symlink(tmp_path / "a", tmp_path / "also_a")
    found = discover_images([tmp_path])
    assert len(found) == 1 and found[0].endswith("x.jpg")


def test_lists_txt_and_csv_relative_to_the_list(tmp_path):
    img = _touch(tmp_path / "imgs" / "one.jpg")
    _touch(tmp_path / "imgs" / "two.jpg")
    (tmp_path / "imgs" / "list.txt").write_text("# a comment\none.jpg\n\n" + str(tmp_path / "imgs/two.jpg") + "\n")
    assert read_path_list(str(tmp_path / "imgs" / "list.txt")) == [str(img), str(tmp_path / "imgs/two.jpg")]
    pd.DataFrame({"id": [1, 2], "path": ["imgs/one.jpg", "imgs/missing.jpg"]}).to_csv(tmp_path / "l.csv",
                                                                                      index=False)
    # a listed file that does not exist is kept: it is reported as skipped when read, not fatal
    assert discover_images([tmp_path / "l.csv"]) == [str(tmp_path / "imgs/one.jpg"),
                                                     str(tmp_path / "imgs/missing.jpg")]
    pd.DataFrame({"a": [1], "b": [2]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(PerceptionsError, match="'path' column"):
        discover_images([tmp_path / "bad.csv"])


def test_order_is_input_order_and_duplicates_are_dropped(tmp_path):
    a, b = _touch(tmp_path / "f" / "a.jpg"), _touch(tmp_path / "z.jpg")
    assert discover_images([b, tmp_path / "f", str(a), b]) == [str(b), str(a)]


def test_missing_path_and_zero_images_are_clear_errors(tmp_path):
    with pytest.raises(PerceptionsError, match="no such file or folder"):
        discover_images([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    _touch(tmp_path / "empty" / "readme.md")
    with pytest.raises(PerceptionsError, match="no images found"):
        discover_images([tmp_path / "empty"])


def _table():
    return pd.DataFrame({"path": ["a/-1.5_2.5_abc_City.jpg", "b.jpg"], "lat": [-1.5, np.nan], "lon": [2.5, np.nan],
                         "location_id": ["abc", ""], "city": ["City", ""], "safe_score": [5.25, 7.0],
                         "safe_decile": np.array([5, 8], dtype=np.int64)})


def test_geojson_is_lon_lat_points_with_properties(tmp_path):
    collection = to_geojson(_table())
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == 1
    feature = collection["features"][0]
    assert feature["geometry"] == {"type": "Point", "coordinates": [2.5, -1.5]}  # lon first (RFC 7946)
    assert feature["properties"]["safe_decile"] == 5 and "lat" not in feature["properties"]
    write_table(_table(), tmp_path / "p.geojson")
    loaded = json.loads((tmp_path / "p.geojson").read_text())  # strict JSON: no NaN tokens
    assert loaded == collection


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".geojson"])
def test_tables_round_trip(tmp_path, suffix):
    out = write_table(_table(), tmp_path / f"p{suffix}")
    back = read_predictions(out)
    expected = _table() if suffix != ".geojson" else _table().iloc[:1]
    assert list(back["path"]) == list(expected["path"])
    assert np.allclose(back["safe_score"], expected["safe_score"])
    assert list(back["safe_decile"]) == list(expected["safe_decile"])
    assert not list(tmp_path.glob(".*tmp"))  # written atomically, nothing left behind


def test_existing_output_is_refused_unless_asked(tmp_path):
    out = tmp_path / "p.csv"
    out.write_text("keep me")
    with pytest.raises(PerceptionsError, match="already exists"):
        check_output(out)
    check_output(out, overwrite=True)
    check_output(out, resume=True)
    assert out.read_text() == "keep me"
    with pytest.raises(PerceptionsError, match="unknown output format"):
        check_output(tmp_path / "p.xlsx")
    assert side_path(out, "skipped").name == "p.csv.skipped.csv"
