"""What `predict` writes: the predictions table as CSV, Parquet or GeoJSON (chosen by the extension), the side
files next to it (`<out>.skipped.csv`, a job's `<out>.part-<rank>.csv`), and reading a table back
(`map` reads predictions with `read_predictions`).

Every file is written atomically through `perceptions.files`, and JSON without NaN tokens (null instead).
Pure DataFrame and file helpers, no torch.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from perceptions.errors import DataError, PerceptionsError
from perceptions.files import atomic_path, json_text, jsonable

OUTPUT_FORMATS = {".csv": "csv", ".parquet": "parquet", ".geojson": "geojson", ".json": "geojson"}
LOCATION_COLUMNS = ("path", "lat", "lon", "location_id", "city")


def prediction_columns(studies) -> list[str]:
    """The columns of a predictions table, in order: location, then `<study>_score`, then `<study>_decile`."""
    return list(LOCATION_COLUMNS) + [f"{s}_score" for s in studies] + [f"{s}_decile" for s in studies]


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
    """Write predictions as CSV, Parquet or GeoJSON (by extension), atomically."""
    fmt = output_format(out)
    out = Path(out)
    with atomic_path(out) as tmp:
        if fmt == "csv":
            df.to_csv(tmp, index=False)
        elif fmt == "parquet":
            df.to_parquet(tmp, index=False)
        else:
            tmp.write_text(json_text(to_geojson(df), indent=None), encoding="utf-8")
    return out


def to_geojson(df) -> dict:
    """FeatureCollection of Point features ([lon, lat] order, per RFC 7946) for rows with coordinates;
    properties are the other columns, as JSON values (NaN -> None, numpy scalars -> Python)."""
    features = []
    for record in df.to_dict(orient="records"):
        lat, lon = _as_float(record.get("lat")), _as_float(record.get("lon"))
        if lat is None or lon is None:
            continue
        props = jsonable({k: v for k, v in record.items() if k not in ("lat", "lon")})
        features.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
                         "properties": props})
    return {"type": "FeatureCollection", "features": features}


def _as_float(value):
    """A finite coordinate as a float, else None (a point needs both)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


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
