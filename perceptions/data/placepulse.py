"""Read and write Place Pulse 2.0 (PP2) files: image file names, `qscores.tsv` and votes.

Every reader returns a tidy DataFrame or raises `DataError` naming the file, the row and the problem.
Rows are numbered as a spreadsheet shows them: the header is row 1, the first data row is row 2.

Votes come in three formats (a sample of each is in tests/fixtures/placepulse/), detected from the header:
  site export     `_id, choice, left, right, study_id, timestamp, voter_uniqueid` (TSV or CSV)
  Kaggle          `left_id, right_id, winner, left_lat, left_long, right_lat, right_long, category`
  extended export `,no,place_id_left,place_id_right,study_id,left,right,voter_uniqueid,choice,...`
All become one table: study (short name), left, right, choice (left|right|equal) and, when the file has them,
timestamp, voter, left_lat, left_lon, right_lat, right_lon, left_place_id, right_place_id, left_city, right_city.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from perceptions.errors import DataError, PerceptionsError
from perceptions.files import atomic_path
from perceptions.studies import STUDY_NAMES, study

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
CHOICES = ("left", "right", "equal")
QSCORES_BASE_COLUMNS = ("_id", "location_id", "num_votes", "place_id", "study_id")
TRUESKILL_COLUMNS = ("trueskill.score", "trueskill.stds.-1")
# The score column each scoring method writes into qscores.tsv (perceptions.data.scoring fills them).
SCORE_COLUMNS = {"trueskill": "trueskill.score", "qscore": "qscore", "bradley-terry": "bradley_terry.score"}

# `{lat}_{lon}_{location_id}_{City}.ext`; the city is whatever follows the third underscore.
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_IMAGE_NAME = re.compile(rf"({_NUMBER})_({_NUMBER})_([A-Za-z0-9]+)_(.+)")
_HEADER_ROW = 1


def _data_row(position: int) -> int:
    """Spreadsheet row of the data row at 0-based `position` (the header is row 1)."""
    return int(position) + 2


# ---------------------------------------------------------------------------------------------- image names

def parse_image_name(name) -> dict:
    """Location fields from a PP2 image name; NaN / None for names that do not follow the pattern."""
    empty = {"lat": math.nan, "lon": math.nan, "location_id": None, "city": None}
    base = os.path.basename(str(name))
    stem, ext = os.path.splitext(base)
    if ext.lower() not in IMAGE_EXTENSIONS:
        return empty
    match = _IMAGE_NAME.fullmatch(stem)
    if not match:
        return empty
    lat, lon = float(match.group(1)), float(match.group(2))
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return empty
    return {"lat": lat, "lon": lon, "location_id": match.group(3), "city": match.group(4)}


def list_images(folder) -> pd.DataFrame:
    """Every image under `folder` (recursive, symlinked folders not followed), sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PerceptionsError(f"{folder}: not a folder of images")
    paths = []
    # os.walk does not follow symlinked folders, so a symlink loop cannot trap it.
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        paths.extend(os.path.join(root, f) for f in files if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS)
    paths.sort()
    rows = [parse_image_name(p) for p in paths]
    table = pd.DataFrame(rows, columns=["lat", "lon", "location_id", "city"])
    table.insert(0, "path", pd.Series(paths, dtype=object))
    table["lat"] = table["lat"].astype(float)
    table["lon"] = table["lon"].astype(float)
    return table


# ---------------------------------------------------------------------------------------------- table reading

def _read_table(path) -> pd.DataFrame:
    """A CSV or TSV file (separator from its header line) as strings; empty cells are ''."""
    path = Path(path)
    if not path.is_file():
        raise PerceptionsError(f"{path}: no such file")
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if not head.strip():
        raise DataError(path, "file is empty")
    if b"\0" in head:
        raise DataError(path, "not a text table (contains NUL bytes)")
    # Only the header line matters here (the first 64 KiB may end inside a multi-byte character).
    first_line = next(line for line in head.split(b"\n") if line.strip())
    try:
        header = first_line.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(path, "not UTF-8 text", row=_HEADER_ROW) from None
    sep = "\t" if "\t" in header else ","
    try:
        table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                            skip_blank_lines=True)
    except UnicodeDecodeError:
        raise DataError(path, "not UTF-8 text") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OverflowError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        ragged = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", reason)
        if ragged:
            raise DataError(path, f"cannot read as a table: {ragged.group(3)} fields where the header has "
                                  f"{ragged.group(1)}", row=int(ragged.group(2))) from None
        raise DataError(path, f"cannot read as a table: {reason}") from None
    table.columns = [str(c).strip() for c in table.columns]
    # Short rows leave NaN even with keep_default_na=False; treat them as empty cells.
    table = table.fillna("").astype(str)
    if len(table) == 0:
        raise DataError(path, "no data rows (only a header)")
    return table


def _require(table: pd.DataFrame, path, columns, what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(path, f"missing column(s) {', '.join(missing)} for {what}", row=_HEADER_ROW)


def _numbers(table: pd.DataFrame, column: str, path) -> np.ndarray:
    """A column as floats; '' is NaN, anything else that is not a number is an error naming its row."""
    text = table[column].str.strip()
    values = pd.to_numeric(text.where(text != "", None), errors="coerce").astype(float)
    bad = values.isna().to_numpy() & (text != "").to_numpy()
    if bad.any():
        pos = int(np.argmax(bad))
        raise DataError(path, f"column {column}: {text.iloc[pos]!r} is not a number", row=_data_row(pos))
    return values.to_numpy()


def _study_names(values: pd.Series, path, column: str) -> pd.Series:
    """Short study names for a column of names, aliases or PP2 ids; unknown ones name their first row."""
    text = values.str.strip()
    names = {}
    for key in pd.unique(text):
        try:
            names[key] = study(key).name if key else None
        except PerceptionsError:
            names[key] = None
        if names[key] is None:
            pos = int(np.argmax((text == key).to_numpy()))
            problem = "missing study" if not key else f"unknown study {key!r} in column {column}"
            raise DataError(path, problem, row=_data_row(pos))
    return text.map(names)


def _ids(table: pd.DataFrame, column: str, path) -> pd.Series:
    ids = table[column].str.strip()
    empty = (ids == "").to_numpy()
    if empty.any():
        raise DataError(path, f"missing location id in column {column}", row=_data_row(int(np.argmax(empty))))
    return ids


# ---------------------------------------------------------------------------------------------- votes

def read_votes(path, keep_self_votes: bool = False) -> pd.DataFrame:
    """Votes in any of the three PP2 formats as one tidy table, in file order (`vote_times` gives the time order
    where the file has timestamps: the site and extended exports do, Kaggle's votes.csv does not). A vote of an
    image with itself is an error naming its row, unless keep_self_votes (`perceptions check` lists them)."""
    table = _read_table(path)
    cols = set(table.columns)
    if cols & {"winner", "left_id", "right_id"}:
        _require(table, path, ("left_id", "right_id", "winner", "category"), "Kaggle-style votes")
        names = {"left": "left_id", "right": "right_id", "choice": "winner",
                 "left_lat": "left_lat", "left_lon": "left_long", "right_lat": "right_lat", "right_lon": "right_long"}
        study_cols = ["category"]
    elif cols & {"left", "right", "choice"}:
        study_cols = [c for c in ("study_id", "study", "study_question", "category") if c in cols]
        _require(table, path, ("left", "right", "choice"), "votes")
        if not study_cols:
            raise DataError(path, "missing column study_id (or study) for votes", row=_HEADER_ROW)
        names = {"left": "left", "right": "right", "choice": "choice",
                 "left_lat": "lat_left", "left_lon": "long_left", "right_lat": "lat_right", "right_lon": "long_right",
                 "left_place_id": "place_id_left", "right_place_id": "place_id_right",
                 "left_city": "place_name_left", "right_city": "place_name_right", "voter": "voter_uniqueid"}
    else:
        raise DataError(path, "missing columns left, right, choice, study_id: not a Place Pulse votes file "
                              "(site export, Kaggle votes.csv or extended export)", row=_HEADER_ROW)

    # The first non-empty study column wins (study_id before the question text).
    study_text = table[study_cols[0]].str.strip()
    for col in study_cols[1:]:
        study_text = study_text.where(study_text != "", table[col].str.strip())
    votes = pd.DataFrame({"study": _study_names(study_text, path, study_cols[0])})
    votes["left"] = _ids(table, names["left"], path)
    votes["right"] = _ids(table, names["right"], path)
    same = (votes["left"] == votes["right"]).to_numpy()
    if same.any() and not keep_self_votes:
        pos = int(np.argmax(same))
        raise DataError(path, f"vote compares image {votes['left'].iloc[pos]!r} with itself", row=_data_row(pos))
    choice = table[names["choice"]].str.strip().str.lower()
    bad = ~choice.isin(CHOICES).to_numpy()
    if bad.any():
        pos = int(np.argmax(bad))
        raise DataError(path, f"choice {table[names['choice']].iloc[pos]!r} is not left, right or equal",
                        row=_data_row(pos))
    votes["choice"] = choice

    if "timestamp" in cols:
        votes["timestamp"] = table["timestamp"].str.strip()
    elif "day" in cols and "time" in cols:
        votes["timestamp"] = (table["day"].str.strip() + " " + table["time"].str.strip()).str.strip()
    for out, src in names.items():
        if out in ("left", "right", "choice") or src not in cols:
            continue
        if out.endswith(("_lat", "_lon")):
            votes[out] = _numbers(table, src, path)
        else:
            votes[out] = table[src].str.strip()
    return votes


# ---------------------------------------------------------------------------------------------- vote times

# The timestamp formats a votes file may use; one file must stick to one of them.
_TIME_FORMATS = {
    "ISO date-time": re.compile(r"\d{4}-\d{1,2}-\d{1,2}(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
                                r"(?:Z|[+-]\d{2}:?\d{2})?"),
    "epoch seconds": re.compile(r"\d+(?:\.\d+)?"),
    "MM/DD/YYYY": re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})(?: (\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?))?"),
}
_TIME_EXAMPLES = "ISO `2013-06-01 12:00:00`, epoch seconds or `06/01/2013 12:00`"


def vote_times(votes: pd.DataFrame, path=None) -> np.ndarray | None:
    """A sort key per vote from its `timestamp` (float: seconds since 1970), or None when the votes carry no
    timestamps (no column, or every cell empty). One format per file (see _TIME_FORMATS): a row in another
    format, an empty or impossible timestamp is an error naming the row (the file's row with `path`, else the
    vote's position)."""
    if "timestamp" not in votes.columns:
        return None
    text = votes["timestamp"].fillna("").astype(str).str.strip().reset_index(drop=True)
    if (text == "").all():
        return None

    def fail(pos: int, problem: str):
        if path is not None:
            raise DataError(path, problem, row=_data_row(pos))
        raise PerceptionsError(f"vote {pos}: {problem}")

    empty = (text == "").to_numpy()
    if empty.any():
        fail(int(np.argmax(empty)), f"no timestamp, while row {_data_row(int(np.argmin(empty)))} has one: fill "
                                    "them in, or drop the timestamp column to score in file order")
    kind = np.full(len(text), "", dtype=object)
    for name, pattern in _TIME_FORMATS.items():
        todo = np.flatnonzero(kind == "")
        if todo.size == 0:
            break
        kind[todo[text.iloc[todo].str.fullmatch(pattern.pattern).to_numpy(dtype=bool)]] = name
    unknown = kind == ""
    if unknown.any():
        pos = int(np.argmax(unknown))
        fail(pos, f"timestamp {text.iloc[pos]!r} is not a date and time ({_TIME_EXAMPLES})")
    other = kind != kind[0]
    if other.any():
        pos = int(np.argmax(other))
        fail(pos, f"timestamps in two formats: {text.iloc[pos]!r} ({kind[pos]}) here, {text.iloc[0]!r} "
                  f"({kind[0]}) in row {_data_row(0)}; use one format for the whole file")
    if kind[0] == "epoch seconds":
        return pd.to_numeric(text).to_numpy(dtype=float)
    if kind[0] == "MM/DD/YYYY":
        parts = text.str.extract(_TIME_FORMATS["MM/DD/YYYY"].pattern)
        text = parts[2] + "-" + parts[0] + "-" + parts[1] + " " + parts[3].fillna("00:00")
    when = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    bad = when.isna().to_numpy()
    if bad.any():
        pos = int(np.argmax(bad))
        fail(pos, f"timestamp {votes['timestamp'].iloc[pos]!r} is not a possible date and time")
    return ((when - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(dtype=float)


# ---------------------------------------------------------------------------------------------- qscores

def read_qscores(path) -> pd.DataFrame:
    """A PP2 `qscores.tsv` (or one written by `write_qscores`) with a `study` short-name column added.

    Score columns are those present: `trueskill.score` and `trueskill.stds.-1` in PP2's own file; `qscore` or
    `bradley_terry.score` in files from other scoring methods. At least one score column is required.
    """
    table = _read_table(path)
    table = table.drop(columns=[c for c in table.columns if c == "" or c.startswith("Unnamed: ")])
    if "study_id" not in table.columns and "study" not in table.columns:
        _require(table, path, ("location_id", "study_id"), "qscores")
    _require(table, path, ("location_id",), "qscores")
    known_scores = list(TRUESKILL_COLUMNS) + [c for c in SCORE_COLUMNS.values() if c not in TRUESKILL_COLUMNS]
    score_cols = [c for c in known_scores if c in table.columns]
    if not score_cols:
        raise DataError(path, f"missing score column: expected one of {', '.join(known_scores)}", row=_HEADER_ROW)

    source = "study_id" if "study_id" in table.columns else "study"
    names = _study_names(table[source], path, source)
    out = pd.DataFrame({
        "_id": table["_id"].str.strip() if "_id" in table.columns else "",
        "location_id": _ids(table, "location_id", path),
        "num_votes": _numbers(table, "num_votes", path) if "num_votes" in table.columns else np.nan,
        "place_id": table["place_id"].str.strip() if "place_id" in table.columns else "",
        "study_id": names.map({n: study(n).study_id for n in pd.unique(names)}),
    })
    for col in score_cols:
        out[col] = _numbers(table, col, path)
    for col in table.columns:  # anything else the file carries comes along as text
        if col not in out.columns and col != "study" and col not in QSCORES_BASE_COLUMNS:
            out[col] = table[col]
    out["study"] = names
    dup = out.duplicated(["study", "location_id"], keep=False).to_numpy()
    if dup.any():
        first = int(np.argmax(dup))
        again = int(np.flatnonzero(dup & (out["location_id"] == out["location_id"].iloc[first]).to_numpy()
                                   & (out["study"] == out["study"].iloc[first]).to_numpy())[1])
        raise DataError(path, f"duplicate score for location {out['location_id'].iloc[first]!r} in study "
                              f"{out['study'].iloc[first]} (also row {_data_row(first)})", row=_data_row(again))
    return out


def _row_id(study_id: str, location_id: str) -> str:
    """A stable 24-hex `_id` for a score row we computed (PP2's own ids are database ids)."""
    return hashlib.sha1(f"{study_id}/{location_id}".encode()).hexdigest()[:24]


def write_qscores(df: pd.DataFrame, path) -> None:
    """Write scores in PP2's layout: unnamed index column first, then `_id location_id num_votes place_id
    study_id` and the score columns, tab-separated. Written to a temp name then renamed over `path`:
    callers that must not replace a user's file check first (as `scoring.score_file` does)."""
    if "location_id" not in df.columns or not ({"study", "study_id"} & set(df.columns)):
        raise PerceptionsError("write_qscores needs location_id and study (or study_id) columns")
    df = df.reset_index(drop=True)
    out = pd.DataFrame(index=df.index)
    ids = df["study_id"] if "study_id" in df.columns else df["study"].map(lambda s: study(s).study_id)
    out["study_id"] = ids.astype(str)
    out["location_id"] = df["location_id"].astype(str)
    if "_id" in df.columns and (df["_id"].astype(str) != "").all():
        out["_id"] = df["_id"].astype(str)
    else:
        out["_id"] = [_row_id(s, loc) for s, loc in zip(out["study_id"], out["location_id"])]
    out["num_votes"] = df["num_votes"] if "num_votes" in df.columns else ""
    out["place_id"] = df["place_id"] if "place_id" in df.columns else ""
    rest = [c for c in df.columns if c not in QSCORES_BASE_COLUMNS and c != "study"]
    for col in rest:
        out[col] = df[col]
    out = out[list(QSCORES_BASE_COLUMNS) + rest]
    if "num_votes" in df.columns and pd.api.types.is_float_dtype(out["num_votes"]):
        whole = out["num_votes"].dropna()
        if (whole == whole.round()).all():
            out["num_votes"] = out["num_votes"].astype("Int64")
    with atomic_path(path) as tmp:
        out.to_csv(tmp, sep="\t", index=True, float_format="%.12g")


def study_order(names) -> list[str]:
    """The studies present in `names`, in canonical order."""
    present = set(pd.unique(pd.Series(names, dtype=object)))
    return [n for n in STUDY_NAMES if n in present]
