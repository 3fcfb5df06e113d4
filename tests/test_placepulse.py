"""PP2 readers and writers on the real fixtures (tests/fixtures/placepulse, copied from ../shared)."""
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perceptions.cli import main
from perceptions.data.placepulse import (list_images, parse_image_name, read_qscores, read_votes, vote_times,
                                         write_qscores)
from perceptions.errors import DataError, PerceptionsError

FIXTURES = Path(__file__).parent / "fixtures" / "placepulse"
VOTES = FIXTURES / "votes_boston_newyork.csv"
SAFE_ID = "50a68a51fdc9f05596000002"


# ---------------------------------------------------------------------------------------------- image names

def test_parse_image_name_reads_the_pp2_pattern():
    got = parse_image_name("-19.818072_-43.951946_513d5c7afdc9f03587003718_BeloHorizonte.JPG")
    assert got == {"lat": -19.818072, "lon": -43.951946, "location_id": "513d5c7afdc9f03587003718",
                   "city": "BeloHorizonte"}


def test_all_real_file_names_parse_to_their_city_and_coordinates():
    names = pd.read_csv(FIXTURES / "filenames_40_cities.csv")
    assert len(names) == 8246
    parsed = pd.DataFrame([parse_image_name(n) for n in names["filename"]])
    assert parsed["location_id"].str.fullmatch(r"[0-9a-f]{24}").all()
    assert (parsed["city"] == names["city"]).all()
    assert np.allclose(parsed["lat"], names["lat"], atol=1e-9, rtol=0)
    assert np.allclose(parsed["lon"], names["long"], atol=1e-9, rtol=0)
    assert parsed["city"].nunique() == 40


@pytest.mark.parametrize("name", ["1.5_2.5_abc123_Paris.jpg", "dir/sub/1.5_2.5_abc123_Paris.png",
                                  "1.5_2.5_abc123_Paris.jpeg", "1.5_2.5_abc123_Paris.PNG"])
def test_parse_image_name_accepts_other_extensions_and_paths(name):
    assert parse_image_name(name) == {"lat": 1.5, "lon": 2.5, "location_id": "abc123", "city": "Paris"}


@pytest.mark.parametrize("name", ["photo.jpg", "1.5_2.5_abc_Paris.txt", "1.5_2.5_Paris.JPG", "", "_.jpg",
                                  "95.0_2.5_abc123_Paris.JPG", "1.5_200_abc123_Paris.JPG", "a_b_c_d.JPG",
                                  "1.5_2.5_abc123_.JPG", ".JPG"])
def test_names_off_the_pattern_get_empty_location_fields(name):
    got = parse_image_name(name)
    assert math.isnan(got["lat"]) and math.isnan(got["lon"])
    assert got["location_id"] is None and got["city"] is None


def test_list_images_is_recursive_sorted_and_skips_other_files(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ["b/2.0_3.0_bbb_Rome.jpg", "1.0_2.0_aaa_Rome.JPG", "notes.txt", "b/holiday.png"]:
        (tmp_path / name).write_bytes(b"x")
    table = list_images(tmp_path)
    assert list(table.columns) == ["path", "lat", "lon", "location_id", "city"]
    assert table["path"].tolist() == sorted(table["path"].tolist())
    assert len(table) == 3
    named = table.set_index("location_id", drop=False)
    assert named.loc["bbb", "lat"] == 2.0 and named.loc["aaa", "city"] == "Rome"
    holiday = table[table["path"].str.endswith("holiday.png")].iloc[0]
    assert math.isnan(holiday["lat"]) and pd.isna(holiday["location_id"]) and pd.isna(holiday["city"])


def test_list_images_on_the_real_images_and_a_symlink_loop(tmp_path):
    table = list_images(FIXTURES / "images")
    assert table["location_id"].tolist() == ["513d5c7afdc9f03587003718", "513d61e8fdc9f03587003edd"]
    assert (table["city"] == "BeloHorizonte").all()
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "1.0_2.0_aaa_Rome.jpg").write_bytes(b"x")
    assert len(list_images(tmp_path)) == 1


def test_list_images_refuses_a_missing_folder(tmp_path):
    with pytest.raises(PerceptionsError, match="not a folder"):
        list_images(tmp_path / "nope")


# ---------------------------------------------------------------------------------------------- qscores

def test_read_real_qscores():
    q = read_qscores(FIXTURES / "qscores.tsv")
    assert len(q) == 2 and (q["study"] == "safe").all() and (q["study_id"] == SAFE_ID).all()
    assert "Unnamed: 0" not in q.columns and "" not in q.columns
    row = q.set_index("location_id").loc["513d5c7afdc9f03587003718"]
    assert row["trueskill.score"] == pytest.approx(25.9862708308)
    assert row["trueskill.stds.-1"] == pytest.approx(3.67394061129)
    assert row["num_votes"] == 5 and row["_id"] == "51e04891fdc9f01d25a47649"


def test_write_qscores_round_trips_in_pp2_layout(tmp_path):
    q = read_qscores(FIXTURES / "qscores.tsv")
    write_qscores(q, tmp_path / "q.tsv")
    header = (tmp_path / "q.tsv").read_text().splitlines()[0]
    assert header == "\t_id\tlocation_id\tnum_votes\tplace_id\tstudy_id\ttrueskill.score\ttrueskill.stds.-1"
    again = read_qscores(tmp_path / "q.tsv")
    pd.testing.assert_frame_equal(again, q)


def test_read_qscores_accepts_study_names_instead_of_ids(tmp_path):
    path = tmp_path / "q.tsv"
    path.write_text("location_id\tstudy\tqscore\nabc\tsafety\t5.5\nabc\tlively\t4\n")
    q = read_qscores(path)
    assert q["study"].tolist() == ["safe", "lively"] and q["qscore"].tolist() == [5.5, 4.0]


# ---------------------------------------------------------------------------------------------- votes

def test_read_real_extended_votes():
    votes = read_votes(VOTES)
    assert len(votes) == 955
    assert (votes["study"] == "safe").all()
    assert votes["choice"].value_counts().to_dict() == {"left": 412, "right": 409, "equal": 134}
    raw = pd.read_csv(VOTES, dtype=str)
    assert votes["left"].tolist() == raw["left"].tolist()  # file order kept
    assert votes["timestamp"].iloc[0] == "2014-07-23 17:52:42"
    assert votes["voter"].iloc[0] == "b3c725ba7f6845f284328bd9b0e81cdb"
    assert votes["left_city"].iloc[2] == "Boston" and votes["right_city"].iloc[2] == "New York"
    # Coordinates agree with the separate locations file.
    locations = pd.read_csv(FIXTURES / "votes_boston_newyork_locations.csv").set_index("id")
    assert np.allclose(votes["left_lat"], locations.loc[votes["left"], "lat"])
    assert np.allclose(votes["right_lon"], locations.loc[votes["right"], "long"])


def _site_export(votes: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"_id": [f"v{i}" for i in range(len(votes))], "choice": votes["choice"],
                         "left": votes["left"], "right": votes["right"], "study_id": SAFE_ID,
                         "timestamp": votes["timestamp"], "voter_uniqueid": votes["voter"]})


@pytest.mark.parametrize("sep,suffix", [("\t", ".tsv"), (",", ".csv")])
def test_site_export_as_tsv_or_csv_gives_the_same_votes(tmp_path, sep, suffix):
    extended = read_votes(VOTES)
    path = tmp_path / f"votes{suffix}"
    _site_export(extended).to_csv(path, sep=sep, index=False)
    votes = read_votes(path)
    cols = ["study", "left", "right", "choice", "timestamp", "voter"]
    pd.testing.assert_frame_equal(votes[cols], extended[cols])


def test_kaggle_votes_give_the_same_votes(tmp_path):
    extended = read_votes(VOTES)
    kaggle = pd.DataFrame({"left_id": extended["left"], "right_id": extended["right"],
                           "winner": extended["choice"], "left_lat": extended["left_lat"],
                           "left_long": extended["left_lon"], "right_lat": extended["right_lat"],
                           "right_long": extended["right_lon"], "category": "safety"})
    kaggle.to_csv(tmp_path / "votes.csv", index=False)
    votes = read_votes(tmp_path / "votes.csv")
    cols = ["study", "left", "right", "choice", "left_lat", "left_lon", "right_lat", "right_lon"]
    pd.testing.assert_frame_equal(votes[cols], extended[cols])


def test_vote_times_of_the_three_formats(tmp_path):
    extended = read_votes(VOTES)
    times = vote_times(extended, VOTES)
    expected = (pd.to_datetime(extended["timestamp"]) - pd.Timestamp(0)) / pd.Timedelta(seconds=1)
    assert np.array_equal(times, expected.to_numpy())
    assert not np.all(np.diff(times) >= 0)  # the real export is not in time order
    path = tmp_path / "votes.tsv"
    _site_export(extended).to_csv(path, sep="\t", index=False)
    assert np.array_equal(vote_times(read_votes(path), path), times)
    kaggle = pd.DataFrame({"left_id": extended["left"], "right_id": extended["right"],
                           "winner": extended["choice"], "category": "safety"})
    kaggle.to_csv(tmp_path / "votes.csv", index=False)
    assert vote_times(read_votes(tmp_path / "votes.csv")) is None  # Kaggle's votes.csv has no timestamps
    assert vote_times(extended.assign(timestamp="")) is None


def test_vote_times_refuses_two_formats_naming_the_row(tmp_path):
    path = tmp_path / "votes.csv"
    path.write_text(SITE_HEADER + GOOD_ROW.replace("2013-01-01", "2013-01-01 10:00:00")
                    + f"2,left,aaa,bbb,{SAFE_ID},2013-01-02,v\n" + f"3,left,aaa,bbb,{SAFE_ID},1357120800,v\n")
    with pytest.raises(DataError, match="two formats") as info:
        vote_times(read_votes(path), path)
    assert info.value.row == 4 and "'1357120800'" in str(info.value) and str(path) in str(info.value)
    # without a file: the vote's position
    with pytest.raises(PerceptionsError, match="vote 2: timestamps in two formats"):
        vote_times(read_votes(path))


# ---------------------------------------------------------------------------------------------- bad input

SITE_HEADER = "_id,choice,left,right,study_id,timestamp,voter_uniqueid\n"
GOOD_ROW = f"1,left,aaa,bbb,{SAFE_ID},2013-01-01,v\n"
BAD_VOTES = {
    "empty": ("", "file is empty", None),
    "only header": (SITE_HEADER, "no data rows", None),
    "missing column": ("_id,left,right,study_id\n1,aaa,bbb,x\n", "missing column.*choice", 1),
    "not votes": ("a,b\n1,2\n", "not a Place Pulse votes file", 1),
    "unknown study id": (SITE_HEADER + GOOD_ROW + "2,left,aaa,bbb,deadbeef,t,v\n", "unknown study 'deadbeef'", 3),
    "unknown category": ("left_id,right_id,winner,category\na,b,left,cleaner\n", "unknown study 'cleaner'", 2),
    "bad choice": (SITE_HEADER + GOOD_ROW + GOOD_ROW + f"3,up,aaa,bbb,{SAFE_ID},t,v\n", "choice 'up'", 4),
    "same image twice": (SITE_HEADER + f"1,left,aaa,aaa,{SAFE_ID},t,v\n", "with itself", 2),
    "missing id": (SITE_HEADER + GOOD_ROW + f"1,left,,bbb,{SAFE_ID},t,v\n", "missing location id", 3),
    "bad latitude": ("left_id,right_id,winner,category,left_lat\na,b,left,safety,north\n", "not a number", 2),
    "binary": ("\x00\x01\x02", "NUL", None),
    "ragged": (SITE_HEADER + GOOD_ROW + "1,left,a,b,c,d,e,f,g,h\n", "10 fields where the header has 7", 3),
}


@pytest.mark.parametrize("case", sorted(BAD_VOTES))
def test_bad_votes_raise_one_line_naming_file_and_row(tmp_path, case):
    text, problem, row = BAD_VOTES[case]
    path = tmp_path / "votes.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=problem) as info:
        read_votes(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert info.value.row == row
    if row is not None:
        assert f"row {row}" in message


def test_non_utf8_votes_are_refused(tmp_path):
    path = tmp_path / "votes.csv"
    path.write_bytes(SITE_HEADER.encode() + "1,left,\xe9t\xe9,b,x,t,v\n".encode("latin-1"))
    with pytest.raises(DataError, match="UTF-8"):
        read_votes(path)


BAD_QSCORES = {
    "duplicate row": ("\t_id\tlocation_id\tstudy_id\ttrueskill.score\n0\ta\tx\t" + SAFE_ID + "\t1\n"
                      "1\tb\ty\t" + SAFE_ID + "\t2\n2\tc\tx\t" + SAFE_ID + "\t3\n", "duplicate score", 4),
    "no score column": ("location_id\tstudy_id\nx\t" + SAFE_ID + "\n", "missing score column", 1),
    "no location column": ("study_id\ttrueskill.score\n" + SAFE_ID + "\t3\n", "missing column.*location_id", 1),
    "unknown study": ("location_id\tstudy_id\ttrueskill.score\nx\tnope\t3\n", "unknown study 'nope'", 2),
    "text score": ("location_id\tstudy_id\ttrueskill.score\nx\t" + SAFE_ID + "\thigh\n", "not a number", 2),
    "empty": ("  \n", "file is empty", None),
}


@pytest.mark.parametrize("case", sorted(BAD_QSCORES))
def test_bad_qscores_raise_one_line_naming_file_and_row(tmp_path, case):
    text, problem, row = BAD_QSCORES[case]
    path = tmp_path / "qscores.tsv"
    path.write_text(text)
    with pytest.raises(DataError, match=problem) as info:
        read_qscores(path)
    assert info.value.row == row and "\n" not in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(PerceptionsError, match="no such file"):
        read_votes(tmp_path / "nope.csv")


# ---------------------------------------------------------------------------------------------- `perceptions score`

def test_score_command_writes_one_row_per_location(tmp_path, capsys):
    out = tmp_path / "q.tsv"
    assert main(["score", "--votes", str(VOTES), "--method", "trueskill", "--out", str(out)]) == 0
    summary = capsys.readouterr().out.strip()
    assert summary.count("\n") == 0 and "955 votes" in summary and "1513 images" in summary and "safe" in summary
    scores = read_qscores(out)
    votes = read_votes(VOTES)
    assert sorted(scores["location_id"]) == sorted(set(votes["left"]) | set(votes["right"]))
    assert (scores["study_id"] == SAFE_ID).all()
    assert scores["num_votes"].sum() == 2 * len(votes)
    header = out.read_text().splitlines()[0].split("\t")
    assert header == ["", "_id", "location_id", "num_votes", "place_id", "study_id", "trueskill.score",
                      "trueskill.stds.-1"]


@pytest.mark.parametrize("method,column", [("qscore", "qscore"), ("bradley-terry", "bradley_terry.score")])
def test_score_command_other_methods_name_their_column(tmp_path, method, column):
    out = tmp_path / "q.tsv"
    assert main(["score", "--votes", str(VOTES), "--method", method, "--out", str(out)]) == 0
    scores = read_qscores(out)
    assert column in scores.columns and "trueskill.score" not in scores.columns
    assert scores[column].notna().all()


def test_score_command_says_which_vote_order_it_used(tmp_path, capsys):
    assert main(["score", "--votes", str(VOTES), "--out", str(tmp_path / "a.tsv")]) == 0
    assert "votes in time order" in capsys.readouterr().out
    kaggle = tmp_path / "votes.csv"
    votes = read_votes(VOTES)
    pd.DataFrame({"left_id": votes["left"], "right_id": votes["right"], "winner": votes["choice"],
                  "category": "safety"}).to_csv(kaggle, index=False)
    assert main(["score", "--votes", str(kaggle), "--out", str(tmp_path / "b.tsv")]) == 0
    assert "votes in file order (no timestamps)" in capsys.readouterr().out
    # the time order changes TrueSkill scores of the real, unordered export
    a, b = read_qscores(tmp_path / "a.tsv"), read_qscores(tmp_path / "b.tsv")
    assert a["location_id"].tolist() == b["location_id"].tolist()
    assert not np.allclose(a["trueskill.score"], b["trueskill.score"])


def test_score_command_with_mixed_timestamps_is_one_line(tmp_path, capsys):
    bad = tmp_path / "votes.csv"
    bad.write_text(SITE_HEADER + GOOD_ROW.replace("2013-01-01", "2013-06-01 12:00:00")
                   + f"2,right,aaa,bbb,{SAFE_ID},06/01/2013,v\n")
    assert main(["score", "--votes", str(bad), "--out", str(tmp_path / "q.tsv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert str(bad) in err and "row 3" in err and "two formats" in err
    assert not (tmp_path / "q.tsv").exists()


def test_score_command_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "q.tsv"
    out.write_text("precious")
    assert main(["score", "--votes", str(VOTES), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert out.read_text() == "precious"
    assert main(["score", "--votes", str(VOTES), "--out", str(out), "--overwrite"]) == 0
    assert len(read_qscores(out)) == 1513


def test_score_command_reports_bad_input_without_traceback(tmp_path):
    bad = tmp_path / "votes.csv"
    bad.write_text(SITE_HEADER + f"1,maybe,aaa,bbb,{SAFE_ID},t,v\n")
    proc = subprocess.run([sys.executable, "-m", "perceptions", "score", "--votes", str(bad), "--out",
                           str(tmp_path / "q.tsv")], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "row 2" in proc.stderr and "maybe" in proc.stderr
    assert not (tmp_path / "q.tsv").exists()
