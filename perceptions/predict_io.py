"""What `predict` reads and writes: input discovery (files, folders, lists) and the output tables.

Pure file-system and DataFrame helpers, no torch, so they are quick to test and reuse (`map` reads
predictions back with `read_predictions`).
"""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

from perceptions.errors import DataError, PerceptionsError

LIST_EXTENSIONS = (".txt", ".csv", ".tsv")
OUTPUT_FORMATS = {".csv": "csv", ".parquet": "parquet", ".geojson": "geojson", ".json": "geojson"}
LOCATION_COLUMNS = ("path", "lat", "lon", "location_id", "city")


def image_extensions() -> tuple[str, ...]:
    from perceptions.data.placepulse import IMAGE_EXTENSIONS

    return tuple(e.lower() for e in IMAGE_EXTENSIONS)


# ----------------------------------------------------------------------------------------------- inputs

def discover_images(inputs) -> list[str]:
    """Expand files, folders (recursive) and .txt/.csv lists into a list of image paths, in input order.

    An input that does not exist is fatal (the user typed it); a path inside a list that does not exist is
    kept, so it is reported as skipped at read time. A path met twice is kept once (first place).
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found: list[str] = []
    for item in inputs:
        item = os.fspath(item)
        if os.path.isdir(item):
            found.extend(walk_images(item))
        elif os.path.isfile(item):
            if item.lower().endswith(LIST_EXTENSIONS):
                found.extend(read_path_list(item))
            else:
                found.append(item)  # an explicitly named file is tried even with an odd extension
        else:
            raise PerceptionsError(f"{item}: no such file or folder")
    unique = list(dict.fromkeys(found))
    if not unique:
        names = ", ".join(os.fspath(i) for i in inputs) or "(nothing given)"
        raise PerceptionsError(f"no images found in {names} (looked for {'/'.join(image_extensions())})")
    return unique


def walk_images(folder: str) -> list[str]:
    """Image files under `folder`, recursively, sorted; follows symlinked folders but visits each real folder once
    (a symlink loop ends instead of hanging)."""
    extensions = image_extensions()
    seen_dirs: set[tuple[int, int]] = set()
    images: list[str] = []

    def visit(directory: str) -> None:
        try:
            st = os.stat(directory)
        except OSError:
            return
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            return
        seen_dirs.add(key)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            try:
                if entry.is_dir():  # follows symlinks; `seen_dirs` stops loops
                    visit(entry.path)
                elif entry.name.lower().endswith(extensions) and entry.is_file():
                    images.append(entry.path)
            except OSError:
                continue

    visit(folder)
    return images


def read_path_list(list_path: str) -> list[str]:
    """Paths from a list file: a CSV/TSV with a `path` column, or one path per line.

    Relative paths are taken relative to the list's folder (falling back to the working folder when only
    that one exists), so a list travels with its images.
    """
    with open(list_path, encoding="utf-8-sig", newline="") as f:
        text = f.read()
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    entries = None
    if list_path.lower().endswith((".csv", ".tsv")):
        delimiter = "\t" if list_path.lower().endswith(".tsv") else ","
        header = next(csv.reader([lines[0]], delimiter=delimiter))
        columns = [h.strip().lower() for h in header]
        if "path" in columns:
            col = columns.index("path")
            entries = []
            for row_no, row in enumerate(csv.reader(lines[1:], delimiter=delimiter), start=2):
                if len(row) <= col:
                    raise DataError(list_path, "row has no value in the 'path' column", row=row_no)
                entries.append(row[col])
        elif len(columns) > 1:
            raise DataError(list_path, "a CSV list needs a 'path' column (or give one path per line)")
    if entries is None:
        entries = [line for line in lines if not line.lstrip().startswith("#")]
    base = os.path.dirname(list_path)
    return [_resolve_listed(e.strip(), base) for e in entries if e.strip()]


def _resolve_listed(entry: str, base: str) -> str:
    if os.path.isabs(entry):
        return entry
    beside_list = os.path.join(base, entry)
    if os.path.exists(beside_list) or not os.path.exists(entry):
        return beside_list
    return entry


# ---------------------------------------------------------------------------------------------- outputs

def output_format(out) -> str:
    suffix = Path(out).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise PerceptionsError(f"{out}: unknown output format '{suffix}' (use .csv, .parquet or .geojson)")
    return OUTPUT_FORMATS[suffix]


def side_path(out, what: str) -> Path:
    """`predictions.csv` -> `predictions.csv.skipped.csv`, `.part.csv` ..."""
    out = Path(out)
    return out.with_name(f"{out.name}.{what}.csv")


def check_output(out, overwrite: bool = False, resume: bool = False) -> None:
    """Refuse to replace an existing output unless asked (nothing a user had is overwritten silently)."""
    output_format(out)
    out = Path(out)
    if out.exists() and not (overwrite or resume):
        raise PerceptionsError(f"{out} already exists (use --overwrite to replace it or --resume to complete it)")
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)


def write_table(df, out) -> Path:
    """Write predictions as CSV, Parquet or GeoJSON (by extension), atomically (temp file then rename)."""
    fmt = output_format(out)
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    if fmt == "csv":
        df.to_csv(tmp, index=False)
    elif fmt == "parquet":
        df.to_parquet(tmp, index=False)
    else:
        tmp.write_text(json.dumps(to_geojson(df), allow_nan=False), encoding="utf-8")
    os.replace(tmp, out)
    return out


def to_geojson(df) -> dict:
    """FeatureCollection of Point features ([lon, lat] order, per RFC 7946) for rows with coordinates;
    properties are the other columns (NaN -> null, numpy scalars -> Python)."""
    features = []
    for record in df.to_dict(orient="records"):
        lat, lon = _as_float(record.get("lat")), _as_float(record.get("lon"))
        if lat is None or lon is None:
            continue
        props = {k: _json_value(v) for k, v in record.items() if k not in ("lat", "lon")}
        features.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
                         "properties": props})
    return {"type": "FeatureCollection", "features": features}


def _as_float(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _json_value(value):
    if value is None:
        return None
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def read_predictions(path):
    """Read a predictions file written by `write_table` back into a DataFrame (CSV, Parquet or GeoJSON)."""
    import pandas as pd

    fmt = output_format(path)
    if not Path(path).is_file():
        raise PerceptionsError(f"{path}: no such file")
    try:
        if fmt == "csv":
            return pd.read_csv(path, dtype={"path": str, "location_id": str, "city": str},
                               keep_default_na=False, na_values=[""])
        if fmt == "parquet":
            return pd.read_parquet(path)
        collection = json.loads(Path(path).read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise DataError(path, f"cannot read predictions ({exc})") from exc
    rows = []
    for feature in collection.get("features", []):
        lon, lat = feature["geometry"]["coordinates"][:2]
        rows.append({**feature.get("properties", {}), "lat": lat, "lon": lon})
    df = pd.DataFrame(rows)
    first = [c for c in LOCATION_COLUMNS if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]
