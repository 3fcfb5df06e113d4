"""Property-based tests: random bytes and random rows fed to every PP2 reader.

The only acceptable outcomes are a parsed, valid table or the project's own clear one-line error.
"""
import csv
import io
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perceptions.data.placepulse import CHOICES, parse_image_name, read_qscores, read_votes, write_qscores
from perceptions.errors import PerceptionsError
from perceptions.studies import STUDIES, STUDY_NAMES

FIXTURES = Path(__file__).parent / "fixtures" / "placepulse"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

HEADERS = {
    "site": ["_id", "choice", "left", "right", "study_id", "timestamp", "voter_uniqueid"],
    "kaggle": ["left_id", "right_id", "winner", "left_lat", "left_long", "right_lat", "right_long", "category"],
    "extended": ["", "no", "place_id_left", "place_id_right", "study_id", "left", "right", "voter_uniqueid",
                 "choice", "study_question", "place_name_right", "place_name_left", "day", "time", "lat_right",
                 "long_right", "lat_left", "long_left"],
    "qscores": ["", "_id", "location_id", "num_votes", "place_id", "study_id", "trueskill.score",
                "trueskill.stds.-1"],
}

# Valid values per column, so that many random tables parse; any cell may be replaced by junk.
IDS = [f"513d5c7afdc9f0358700{i:04x}" for i in range(12)]
NUMBERS = st.one_of(st.floats(-200, 200).map(repr), st.integers(-5, 500).map(str), st.just(""))
VALID = {
    "choice": st.sampled_from(["left", "right", "equal", " Left ", "EQUAL"]),
    "winner": st.sampled_from(["left", "right", "equal"]),
    "left": st.sampled_from(IDS), "right": st.sampled_from(IDS), "left_id": st.sampled_from(IDS),
    "right_id": st.sampled_from(IDS), "location_id": st.sampled_from(IDS),
    "study_id": st.sampled_from([s.study_id for s in STUDIES]),
    "category": st.sampled_from(["safety", "lively", "beautiful", "wealthy", "boring", "depressing"]),
    "study_question": st.sampled_from(["safer", "livelier", "more boring"]),
    "num_votes": st.integers(0, 30).map(str),
}
PLAIN = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters=",\t\"'"),
               max_size=8)
JUNK = st.one_of(st.sampled_from(["", "up", "nan", "NA", "1e400", "deadbeef", "\"", "x,y", "a\tb", " "]),
                 st.text(max_size=12))


def _valid(column: str):
    if column in VALID:
        return VALID[column]
    return NUMBERS if any(k in column for k in ("lat", "long", "trueskill", "no")) else PLAIN


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def _call(reader, path):
    """Run a reader; return its table, or None when it refused with the project's own error."""
    try:
        return reader(path)
    except PerceptionsError as exc:
        message = str(exc)
        assert message and "\n" not in message and str(path) in message
        return None


def _check_votes(votes: pd.DataFrame) -> None:
    assert {"study", "left", "right", "choice"} <= set(votes.columns)
    assert votes["choice"].isin(CHOICES).all()
    assert votes["study"].isin(STUDY_NAMES).all()
    assert (votes["left"] != votes["right"]).all()
    assert (votes["left"] != "").all() and (votes["right"] != "").all()


def _check_qscores(q: pd.DataFrame) -> None:
    assert {"location_id", "study", "study_id"} <= set(q.columns)
    assert q["study"].isin(STUDY_NAMES).all()
    assert not q.duplicated(["study", "location_id"]).any()


@FUZZ
@given(data=st.binary(max_size=3000))
def test_random_bytes(scratch, data):
    path = scratch / "random.csv"
    path.write_bytes(data)
    votes = _call(read_votes, path)
    if votes is not None:
        _check_votes(votes)
    q = _call(read_qscores, path)
    if q is not None:
        _check_qscores(q)


SAMPLES = {  # small valid files in each format, to be corrupted byte by byte
    "extended": b"".join((FIXTURES / "votes_boston_newyork.csv").read_bytes().splitlines(keepends=True)[:12]),
    "qscores": (FIXTURES / "qscores.tsv").read_bytes(),
    "site": ("_id\tchoice\tleft\tright\tstudy_id\ttimestamp\tvoter_uniqueid\n"
             "1\tleft\ta\tb\t50a68a51fdc9f05596000002\t2013-06-01\tv1\n"
             "2\tequal\tb\tc\t50f62c41a84ea7c5fdd2e454\t2013-06-02\tv2\n").encode(),
    "kaggle": (b"left_id,right_id,winner,left_lat,left_long,right_lat,right_long,category\n"
               b"a,b,right,1.5,2.5,3.5,4.5,safety\nc,a,equal,1,2,3,4,depressing\n"),
}


@FUZZ
@given(kind=st.sampled_from(sorted(SAMPLES)),
       edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.sampled_from(["set", "insert",
                                                                                            "delete"])),
                      min_size=1, max_size=4))
def test_corrupted_valid_files(scratch, kind, edits):
    data = bytearray(SAMPLES[kind])
    for pos, byte, op in edits:
        pos %= len(data) + 1
        if op == "insert" or pos == len(data):
            data[pos:pos] = bytes([byte])
        elif op == "set":
            data[pos] = byte
        else:
            del data[pos]
    path = scratch / "corrupt.csv"
    path.write_bytes(bytes(data))
    votes = _call(read_votes, path)
    if votes is not None:
        _check_votes(votes)
    q = _call(read_qscores, path)
    if q is not None:
        _check_qscores(q)


def test_samples_are_valid(scratch):
    for kind, data in SAMPLES.items():
        path = scratch / f"{kind}.csv"
        path.write_bytes(data)
        table = (read_qscores if kind == "qscores" else read_votes)(path)
        assert len(table) >= 2


@st.composite
def table_text(draw):
    """A header from one of the PP2 formats (sometimes missing or extra columns) and rows of valid cells,
    a share of them (none to a third, per table) replaced by junk."""
    kind = draw(st.sampled_from(sorted(HEADERS)))
    header = list(HEADERS[kind])
    # Hypothesis favours edge cases; a seeded Random keeps the share of broken cells under control.
    rnd = draw(st.randoms(use_true_random=False))
    junk_rate = draw(st.sampled_from([0.0, 0.0, 0.005, 0.02, 0.3]))
    if rnd.random() < 0.2:
        header = rnd.sample(header, rnd.randint(1, len(header)))
    if rnd.random() < 0.2:
        header.append(draw(st.one_of(PLAIN, JUNK)))
    sep = draw(st.sampled_from([",", "\t"]))
    rows = []
    for _ in range(draw(st.integers(0, 8))):
        row = [draw(JUNK) if rnd.random() < junk_rate else draw(_valid(c)) for c in header]
        if rnd.random() < junk_rate:  # a short or long row
            row = row[:-1] if rnd.random() < 0.5 else row + [draw(JUNK)]
        rows.append(row)
    buf = io.StringIO()
    if draw(st.booleans()):
        writer = csv.writer(buf, delimiter=sep, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    else:  # written naively, so stray separators and quotes stay in the cells
        buf.write("\n".join(sep.join(r) for r in [header] + rows) + "\n")
    return buf.getvalue()


@FUZZ
@given(text=table_text())
def test_random_rows(scratch, text):
    path = scratch / "rows.tsv"
    path.write_text(text, encoding="utf-8")
    votes = _call(read_votes, path)
    if votes is not None:
        _check_votes(votes)
    q = _call(read_qscores, path)
    if q is not None:
        _check_qscores(q)


@FUZZ
@given(name=st.one_of(st.text(max_size=60), st.builds(
    lambda lat, lon, loc, city, ext: f"{lat}_{lon}_{loc}_{city}{ext}",
    st.floats(allow_nan=True, allow_infinity=True), st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet="0123456789abcdef_", max_size=26), st.text(max_size=12),
    st.sampled_from([".JPG", ".jpg", ".png", ".jpeg", ".txt", ""]))))
def test_random_image_names(name):
    got = parse_image_name(name)
    assert set(got) == {"lat", "lon", "location_id", "city"}
    if got["location_id"] is None:
        assert math.isnan(got["lat"]) and math.isnan(got["lon"]) and got["city"] is None
    else:
        assert -90 <= got["lat"] <= 90 and -180 <= got["lon"] <= 180
        assert got["location_id"].isalnum() and got["city"]


@FUZZ
@given(
    lat=st.floats(-90, 90), lon=st.floats(-180, 180),
    loc=st.text(alphabet="0123456789abcdef", min_size=1, max_size=24),
    city=st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\\0"),
                 min_size=1, max_size=12).filter(lambda c: not c.endswith((".", " "))),
    ext=st.sampled_from([".JPG", ".jpg", ".png", ".jpeg", ".PNG"]),
)
def test_well_formed_names_round_trip(lat, lon, loc, city, ext):
    got = parse_image_name(f"{lat:.6f}_{lon:.6f}_{loc}_{city}{ext}")
    assert got["location_id"] == loc and got["city"] == city
    assert got["lat"] == pytest.approx(round(lat, 6), abs=1e-9) and got["lon"] == pytest.approx(round(lon, 6),
                                                                                                abs=1e-9)


@settings(FUZZ, max_examples=40)
@given(st.lists(st.tuples(st.text(alphabet="0123456789abcdefXYZ", min_size=1, max_size=24),
                          st.sampled_from(STUDY_NAMES),
                          st.floats(-1e6, 1e6, allow_nan=False), st.floats(0, 100, allow_nan=False)),
                min_size=1, max_size=20, unique_by=lambda r: (r[0], r[1])))
def test_qscores_round_trip(scratch, rows):
    table = pd.DataFrame(rows, columns=["location_id", "study", "trueskill.score", "trueskill.stds.-1"])
    path = scratch / "q.tsv"
    write_qscores(table, path)
    back = read_qscores(path)
    assert back["location_id"].tolist() == table["location_id"].tolist()
    assert back["study"].tolist() == table["study"].tolist()
    assert np.allclose(back["trueskill.score"], table["trueskill.score"], rtol=1e-11, atol=1e-9)
