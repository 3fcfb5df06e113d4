"""Metadata tables: one row per image, with its path and location, in CSV/TSV, Parquet (GeoParquet too),
GeoJSON, GeoPackage or any other file GeoPandas reads.

`read_table` returns a DataFrame with `path` (resolved: absolute, or relative to the table's folder, or to
`images_dir` when given), `lat` and `lon` in WGS 84 (NaN where missing; range checks are `sources`' job), and
every other column of the table, unchanged, to be carried through to the predictions. A point geometry in
another CRS is transformed to WGS 84 (pyproj, through GeoPandas).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from perceptions.errors import DataError
from perceptions.extras import require
from perceptions.places.columns import find_columns
from perceptions.predict.inputs import resolve_listed

log = logging.getLogger(__name__)

PLAIN_TABLES = (".csv", ".tsv", ".parquet")
GEO_TABLES = (".geojson", ".json", ".gpkg", ".shp", ".fgb", ".gml", ".kml")
TABLE_EXTENSIONS = PLAIN_TABLES + GEO_TABLES


def is_table(path) -> bool:
    return os.path.isfile(path) and str(path).lower().endswith(TABLE_EXTENSIONS)


def is_path_list(path) -> bool:
    """A .txt list, or a CSV/TSV list of one column (paths, with or without a `path` header): the lists
    `predict` always read, still read as lists."""
    lower = str(path).lower()
    if lower.endswith(".txt"):
        return True
    if not lower.endswith((".csv", ".tsv")):
        return False
    with open(path, encoding="utf-8-sig", newline="") as f:
        first = next((line for line in f if line.strip()), "")
    return len(first.rstrip("\r\n").split("\t" if lower.endswith(".tsv") else ",")) <= 1


def read_table(path, images_dir=None, path_col=None, lat_col=None, lon_col=None) -> tuple[pd.DataFrame, dict]:
    """-> (rows: path, lat, lon, then the carried columns; roles: role -> the table's column name)."""
    path = Path(path)
    frame, geometry = _read_any(path)
    roles = find_columns([c for c in frame.columns], path, path_col, lat_col, lon_col)
    if roles["lat"] is None and geometry is None:
        log.warning("%s: no coordinate columns (looked for lat/latitude/y and lon/lng/long/longitude/x); locations "
                    "come from EXIF GPS or Place Pulse names; name the columns with --lat-col and --lon-col", path)
    if geometry is not None and not (lat_col or lon_col):
        lat, lon = geometry  # a point geometry wins over lat/lon-like columns unless those are named
    else:
        lat, lon = _numbers(frame, roles["lat"]), _numbers(frame, roles["lon"])
    base = Path(images_dir) if images_dir else path.parent
    raw_paths = frame[roles["path"]]
    if raw_paths.isna().any():
        first = int(np.flatnonzero(raw_paths.isna().to_numpy())[0])
        raise DataError(path, f"empty value in the path column {roles['path']!r}", row=first + 2)
    resolved = [resolve_listed(str(p).strip(), base) for p in raw_paths]
    # Coordinates become lat/lon; the path column is kept as the table had it (e.g. `filename`) unless it is
    # called `path`, which the output's resolved path replaces.
    consumed = {roles["lat"], roles["lon"], "path"} - {None}
    carried = frame[[c for c in frame.columns if c not in consumed]].reset_index(drop=True)
    rows = pd.DataFrame({"path": resolved, "lat": np.asarray(lat, dtype=float), "lon": np.asarray(lon, dtype=float)})
    rows = pd.concat([rows, carried], axis=1)
    duplicated = rows["path"].duplicated()
    if duplicated.any():
        log.warning("%s: %d image path(s) listed more than once; the first row of each is used", path,
                    int(duplicated.sum()))
        rows = rows[~duplicated].reset_index(drop=True)
    return rows, roles


def _read_any(path: Path):
    """-> (DataFrame without a geometry column, (lat, lon) arrays from a point geometry or None)."""
    lower = path.name.lower()
    try:
        if lower.endswith((".csv", ".tsv")):
            frame = pd.read_csv(path, sep="\t" if lower.endswith(".tsv") else ",", dtype=str,
                                keep_default_na=False, na_values=[""], encoding="utf-8-sig")
            return frame, None
        if lower.endswith(".parquet"):
            import pyarrow.parquet as pq

            if b"geo" not in (pq.read_schema(path).metadata or {}):
                return pd.read_parquet(path), None
            gpd = require("geopandas", "geo")
            return _split_geometry(gpd.read_parquet(path), path)
        gpd = require("geopandas", "geo")
        return _split_geometry(gpd.read_file(path), path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read the table ({str(exc).splitlines()[0] if str(exc) else exc})") from None
    except Exception as exc:  # noqa: BLE001 - pyogrio/pyarrow errors: a damaged or foreign file, one line
        if type(exc).__module__.startswith(("pyogrio", "pyarrow", "fiona", "shapely")):
            raise DataError(path, f"cannot read the table ({type(exc).__name__}: {str(exc).splitlines()[0]})") \
                from None
        raise


def _split_geometry(gdf, path):
    """A GeoDataFrame -> (its other columns, (lat, lon) of its points in WGS 84). No CRS: taken as WGS 84 (GeoJSON's
    own rule). Rows without a point geometry get no location."""
    if gdf.geometry.name not in gdf.columns or gdf.geometry.isna().all():
        return pd.DataFrame(gdf.drop(columns=[gdf.geometry.name], errors="ignore")), None
    if gdf.crs is None:
        log.warning("%s: no CRS; coordinates taken as WGS 84 longitude/latitude", path)
    elif not gdf.crs.equals("EPSG:4326"):
        require("pyproj", "geo")
        gdf = gdf.to_crs("EPSG:4326")
    geometry = gdf.geometry
    points = geometry.geom_type.eq("Point").to_numpy()
    lon = np.where(points, geometry.x.where(points) if points.any() else np.nan, np.nan)
    lat = np.where(points, geometry.y.where(points) if points.any() else np.nan, np.nan)
    if (~points & geometry.notna().to_numpy()).any():
        log.warning("%s: %d row(s) have a geometry that is not a point; they get no location", path,
                    int((~points & geometry.notna().to_numpy()).sum()))
    return pd.DataFrame(gdf.drop(columns=[gdf.geometry.name])), (lat, lon)


def _numbers(frame, column) -> np.ndarray:
    if column is None:
        return np.full(len(frame), np.nan)
    values = frame[column]
    if not pd.api.types.is_numeric_dtype(values):
        values = values.astype("string").str.strip()
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
