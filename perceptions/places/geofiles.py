"""Geographic files in and out: an aggregate (or any layer) written as GeoPackage, GeoParquet, GeoJSON or CSV by
its extension, always in WGS 84, atomically; predictions or an aggregate read back as a GeoDataFrame."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from perceptions.errors import DataError, PerceptionsError
from perceptions.extras import require
from perceptions.files import atomic_path

LAYER_FORMATS = {".gpkg": "GPKG", ".parquet": "parquet", ".geojson": "GeoJSON", ".json": "GeoJSON", ".csv": "csv"}
PREDICTION_SUFFIXES = (".csv", ".parquet", ".geojson", ".json")


def check_layer_output(out, overwrite: bool) -> Path:
    out = Path(out)
    if out.suffix.lower() not in LAYER_FORMATS:
        raise PerceptionsError(f"{out}: unknown output format '{out.suffix}' (use .gpkg, .parquet, .geojson or .csv)")
    if out.exists() and not overwrite:
        raise PerceptionsError(f"{out} already exists (use --overwrite to replace it)")
    return out


def write_layer(gdf, out) -> Path:
    """A GeoDataFrame -> `out` by extension (.gpkg, .parquet = GeoParquet, .geojson, .csv with the geometry as
    WKT), in WGS 84."""
    out = Path(out)
    fmt = LAYER_FORMATS[out.suffix.lower()]
    if gdf.crs is not None and not gdf.crs.equals("EPSG:4326"):
        gdf = gdf.to_crs("EPSG:4326")
    with atomic_path(out) as tmp:
        if fmt == "csv":
            frame = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
            frame["geometry"] = gdf.geometry.to_wkt()
            frame.to_csv(tmp, index=False)
        elif fmt == "parquet":
            gdf.to_parquet(tmp, index=False)
        else:
            # GDAL wants its own extension and a new file: write beside the temporary file, then move it there.
            named = tmp.with_name(tmp.name + out.suffix.lower())
            try:
                gdf.to_file(named, driver=fmt, layer=out.stem if fmt == "GPKG" else None)
                os.replace(named, tmp)
            finally:
                named.unlink(missing_ok=True)
    return out


def read_layer(path):
    """Predictions or an aggregate -> GeoDataFrame in WGS 84. Predictions (lat/lon columns) become points (rows
    without coordinates are dropped); an aggregate keeps its polygons."""
    gpd = require("geopandas", "geo")
    path = Path(path)
    if not path.is_file():
        raise PerceptionsError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, dtype={"path": str, "location_id": str, "city": str}, keep_default_na=False,
                                na_values=[""])
            if "geometry" in frame.columns and "lat" not in frame.columns:
                geometry = gpd.GeoSeries.from_wkt(frame.pop("geometry"), crs="EPSG:4326")
                return gpd.GeoDataFrame(frame, geometry=geometry, crs="EPSG:4326")
            return points_from_table(frame)
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            if b"geo" in (pq.read_schema(path).metadata or {}):
                gdf = gpd.read_parquet(path)
            else:
                return points_from_table(pd.read_parquet(path))
        elif suffix in (".gpkg", ".geojson", ".json", ".shp", ".fgb"):
            gdf = gpd.read_file(path)
        else:
            raise PerceptionsError(f"{path}: unknown format '{suffix}' (use .csv, .parquet, .geojson or .gpkg)")
    except PerceptionsError:
        raise
    except Exception as exc:  # noqa: BLE001 - GDAL, Arrow or a parser: a foreign or damaged file, one line
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(path, f"cannot read it ({first})") from None
    if gdf.crs is None:
        gdf = gdf.set_crs("EPSG:4326")
    elif not gdf.crs.equals("EPSG:4326"):
        gdf = gdf.to_crs("EPSG:4326")
    if "lat" in gdf.columns and "lon" in gdf.columns and gdf.geometry.geom_type.eq("Point").all():
        gdf = gdf.drop(columns=["lat", "lon"])
    return gdf


def points_from_table(frame):
    """Predictions with lat/lon -> points in WGS 84; rows without valid coordinates are dropped."""
    gpd = require("geopandas", "geo")
    for column in ("lat", "lon"):
        if column not in frame.columns:
            raise PerceptionsError(f"the predictions have no '{column}' column")
    lat = pd.to_numeric(frame["lat"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    lon = pd.to_numeric(frame["lon"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    keep = np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180)
    frame = frame[keep].reset_index(drop=True)
    return gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy(lon[keep], lat[keep]), crs="EPSG:4326")
