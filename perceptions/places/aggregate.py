"""Predictions -> H3 hexagons, areas (polygons) or street segments, with coverage and per-study summaries.

Per cell / area / segment: `n` (images; a panorama counts once, by its `level == "panorama"` row, not once per
view), `sufficient` (n >= min_n), and per study `<study>_mean`, `_median`, `_std` (sample, ddof 1) and the
shares of images in deciles 1-2 (`_low_share`) and 9-10 (`_high_share`). Cells with fewer than min_n images
keep their row, with sufficient=false and no summary (empty values), so thin coverage is visible rather than
hidden. Summaries pool the images of a cell; averaging cell values again (e.g. per district) should weight by n,
or small cells count as much as large ones.

Distances to streets are measured in a local metric CRS (the UTM zone of the points), never in degrees.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from perceptions.errors import DataError, PerceptionsError
from perceptions.extras import require
from perceptions.places.geofiles import points_from_table

log = logging.getLogger(__name__)

STATISTICS = ("mean", "median", "std", "low_share", "high_share")


def studies_of(frame) -> list[str]:
    """Studies with both a `<study>_score` and a `<study>_decile` column, in column order."""
    studies = [c.removesuffix("_score") for c in frame.columns if str(c).endswith("_score")]
    studies = [s for s in studies if f"{s}_decile" in frame.columns]
    if not studies:
        raise PerceptionsError("the predictions have no <study>_score and <study>_decile columns")
    return studies


def once_per_image(frame: pd.DataFrame) -> pd.DataFrame:
    """Panorama views are summarised by their panorama's row: rows with level 'view' are left out."""
    if "level" in frame.columns:
        return frame[frame["level"].astype(str) != "view"].reset_index(drop=True)
    return frame


def summarise(frame: pd.DataFrame, key: str, studies, min_n: int) -> pd.DataFrame:
    """One row per value of `key`: n, sufficient and the per-study statistics (empty where insufficient)."""
    groups = frame.groupby(key, sort=True)
    out = pd.DataFrame({"n": groups.size()})
    for study in studies:
        score = pd.to_numeric(frame[f"{study}_score"], errors="coerce")
        decile = pd.to_numeric(frame[f"{study}_decile"], errors="coerce")
        by = frame[key]
        grouped = score.groupby(by)
        out[f"{study}_mean"] = grouped.mean()
        out[f"{study}_median"] = grouped.median()
        out[f"{study}_std"] = grouped.std(ddof=1)
        out[f"{study}_low_share"] = decile.le(2).groupby(by).mean()
        out[f"{study}_high_share"] = decile.ge(9).groupby(by).mean()
    out["sufficient"] = out["n"] >= min_n
    summary = [c for c in out.columns if c not in ("n", "sufficient")]
    out.loc[~out["sufficient"], summary] = np.nan
    out.index.name = key
    return out.reset_index()


def by_h3(predictions: pd.DataFrame, resolution: int, min_n: int = 5):
    """-> GeoDataFrame: h3 cell id, its hexagon, n, sufficient, statistics; cells with images only."""
    h3 = require("h3", "geo")
    gpd = require("geopandas", "geo")
    shapely = require("shapely", "geo")
    if not 0 <= int(resolution) <= 15:
        raise PerceptionsError(f"--h3 must be a resolution from 0 to 15, got {resolution}")
    rows = once_per_image(predictions)
    points = points_from_table(rows)
    studies = studies_of(predictions)
    cells = [h3.latlng_to_cell(lat, lon, int(resolution)) for lat, lon in zip(points.geometry.y, points.geometry.x)]
    table = summarise(points.assign(h3=cells), "h3", studies, min_n)
    hexagons = [shapely.Polygon([(lng, lat) for lat, lng in h3.cell_to_boundary(c)]) for c in table["h3"]]
    return gpd.GeoDataFrame(table, geometry=hexagons, crs="EPSG:4326"), len(rows) - len(points)


def read_polygons(path, key: str | None, what: str):
    """An areas or streets file (anything GeoPandas reads) in WGS 84; `key` must be one of its columns; a file
    without a CRS is refused (its coordinates could be in any unit)."""
    gpd = require("geopandas", "geo")
    require("pyproj", "geo")
    try:
        layer = gpd.read_file(path)
    except Exception as exc:  # noqa: BLE001 - GDAL: not a file it reads
        raise DataError(path, f"cannot read the {what} ({str(exc).splitlines()[0] if str(exc) else exc})") from None
    if key is not None and key not in layer.columns:
        shown = ", ".join(str(c) for c in layer.columns if c != layer.geometry.name)
        raise DataError(path, f"no column {key!r} (--key); it has: {shown or '(no columns)'}")
    if layer.crs is None:
        raise DataError(path, f"the {what} file has no CRS (coordinate reference system); set one, e.g. with "
                              "ogr2ogr -a_srs EPSG:4326, or save it with its .prj")
    if len(layer) == 0:
        raise DataError(path, f"the {what} file has no features")
    return layer.to_crs("EPSG:4326")


def by_areas(predictions: pd.DataFrame, areas_file, key: str, min_n: int = 5):
    """-> GeoDataFrame of every area (those without images too: n=0), keyed by `key`."""
    gpd = require("geopandas", "geo")
    areas = read_polygons(areas_file, key, "areas")
    if areas[key].duplicated().any():
        log.warning("%s: the key %r repeats; areas with the same key are summarised together", areas_file, key)
    rows = once_per_image(predictions)
    points = points_from_table(rows)
    studies = studies_of(predictions)
    joined = gpd.sjoin(points, areas[[key, areas.geometry.name]], how="inner", predicate="within")
    table = summarise(pd.DataFrame(joined.drop(columns=[joined.geometry.name, "index_right"])), key, studies, min_n)
    shapes = areas.dissolve(by=key, as_index=False)[[key, areas.geometry.name]]
    result = shapes.merge(table, on=key, how="left")
    result["n"] = result["n"].fillna(0).astype(int)
    result["sufficient"] = result["n"] >= min_n
    return result, int(len(rows) - joined.index.nunique())


def by_streets(predictions: pd.DataFrame, streets_file, key: str | None = None, max_distance: float = 25.0,
               min_n: int = 5):
    """-> GeoDataFrame of every street segment (n=0 where no image is near); each image goes to its nearest
    segment within max_distance metres (in the UTM zone of the images)."""
    gpd = require("geopandas", "geo")
    if max_distance <= 0:
        raise PerceptionsError(f"--max-distance must be positive, got {max_distance}")
    streets = read_polygons(streets_file, key, "streets")
    if key is None:
        key = "segment"
        streets = streets.assign(segment=np.arange(len(streets)))
    rows = once_per_image(predictions)
    points = points_from_table(rows)
    studies = studies_of(predictions)
    if len(points) == 0:
        raise PerceptionsError("no prediction has coordinates: nothing to place on streets")
    metric = points.estimate_utm_crs()
    near = gpd.sjoin_nearest(points.to_crs(metric), streets[[key, streets.geometry.name]].to_crs(metric),
                             how="inner", max_distance=float(max_distance), distance_col="distance_m")
    near = near[~near.index.duplicated(keep="first")]  # equidistant segments: the first one
    table = summarise(pd.DataFrame(near.drop(columns=[near.geometry.name, "index_right"])), key, studies, min_n)
    result = streets[[key, streets.geometry.name]].merge(table, on=key, how="left")
    result["n"] = result["n"].fillna(0).astype(int)
    result["sufficient"] = result["n"] >= min_n
    return result, int(len(rows) - len(near))
