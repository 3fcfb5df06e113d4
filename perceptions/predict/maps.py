"""Static maps of predicted scores: points (or hexagon means) coloured by score, one panel per city.

Offline by design: plain longitude/latitude axes (equirectangular, aspect corrected for the latitude), no web
tiles. Cities far apart (PP2 has 56) get a panel each, so a map of two cities is not two dots.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from perceptions.errors import PerceptionsError
from perceptions.predict.writers import read_predictions
from perceptions.studies import study as find_study

PANEL_DISTANCE_KM = 50.0  # groups of points whose centres are closer than this share a panel
EARTH_RADIUS_KM = 6371.0
PICTURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def located_rows(predictions: pd.DataFrame, score_column: str) -> pd.DataFrame:
    """Rows with finite lat, lon and score."""
    for column in ("lat", "lon", score_column):
        if column not in predictions.columns:
            raise PerceptionsError(f"the predictions have no '{column}' column")
    lat = pd.to_numeric(predictions["lat"], errors="coerce")
    lon = pd.to_numeric(predictions["lon"], errors="coerce")
    score = pd.to_numeric(predictions[score_column], errors="coerce")
    keep = np.isfinite(lat) & np.isfinite(lon) & np.isfinite(score)
    return predictions.assign(lat=lat, lon=lon, **{score_column: score})[keep].reset_index(drop=True)


def panel_groups(points: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    """Split points into panels: by city name where there is one (else by 1-degree cell), then merge groups
    whose centres lie within PANEL_DISTANCE_KM. Returns (panel name, row positions), largest panel first."""
    city = points["city"].fillna("").astype(str) if "city" in points.columns else pd.Series("", index=points.index)
    cell = ("@" + np.floor(points["lat"]).astype(int).astype(str) + ","
            + np.floor(points["lon"]).astype(int).astype(str))
    keys = city.where(city != "", cell).to_numpy()
    names = list(dict.fromkeys(keys))
    members = {k: np.flatnonzero(keys == k) for k in names}
    centres = np.array([[points["lat"].to_numpy()[members[k]].mean(), points["lon"].to_numpy()[members[k]].mean()]
                        for k in names])
    parent = list(range(len(names)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            if haversine_km(*centres[i], *centres[j]) < PANEL_DISTANCE_KM:
                parent[find(j)] = find(i)
    panels: dict[int, list[str]] = {}
    for i, name in enumerate(names):
        panels.setdefault(find(i), []).append(name)
    result = []
    for group in panels.values():
        rows = np.sort(np.concatenate([members[k] for k in group]))
        labels = [k for k in group if not k.startswith("@")]
        label = ", ".join(labels[:3]) + (" ..." if len(labels) > 3 else "") if labels else _place_label(points, rows)
        result.append((label, rows))
    return sorted(result, key=lambda p: -len(p[1]))


def _place_label(points: pd.DataFrame, rows: np.ndarray) -> str:
    lat, lon = points["lat"].to_numpy()[rows].mean(), points["lon"].to_numpy()[rows].mean()
    return f"{abs(lat):.2f}{'N' if lat >= 0 else 'S'} {abs(lon):.2f}{'E' if lon >= 0 else 'W'}"


def haversine_km(lat1, lon1, lat2, lon2) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def plot_score_map(predictions: pd.DataFrame, study: str, out, hexbin: bool = False, gridsize: int = 30,
                   max_panels: int = 16, source: str = "") -> dict:
    """Draw `<study>_score` of the located rows to `out` (.png, .pdf, .svg). Returns a summary dict."""
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    score_column = f"{study}_score"
    if score_column not in predictions.columns:
        available = [c.removesuffix("_score") for c in predictions.columns if c.endswith("_score")]
        raise PerceptionsError(f"{source or 'the predictions'} have no {score_column} column "
                               f"(studies present: {', '.join(available) or 'none'})")
    points = located_rows(predictions, score_column)
    if points.empty:
        raise PerceptionsError(f"no rows of {source or 'the predictions'} have coordinates (lat/lon), so there "
                               "is nothing to map; coordinates come from PP2-style names "
                               "{lat}_{lon}_{id}_{City}.jpg")
    panels = panel_groups(points)
    shown = panels[:max_panels]
    ncols = math.ceil(math.sqrt(len(shown)))
    nrows = math.ceil(len(shown) / ncols)
    fig = Figure(figsize=(4.2 * ncols + 1.2, 4.0 * nrows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    scores = points[score_column].to_numpy()
    norm = Normalize(vmin=float(np.nanmin(scores)), vmax=float(np.nanmax(scores)) + 1e-9)
    mappable = None
    for ax, (label, rows) in zip(axes, shown):
        lat, lon, value = (points["lat"].to_numpy()[rows], points["lon"].to_numpy()[rows], scores[rows])
        if hexbin and len(rows) > 1:
            mappable = ax.hexbin(lon, lat, C=value, reduce_C_function=np.mean, gridsize=gridsize, mincnt=1,
                                 cmap="viridis", norm=norm, linewidths=0.1)
        else:
            size = float(np.clip(3000 / max(len(rows), 1), 4, 60))
            mappable = ax.scatter(lon, lat, c=value, s=size, cmap="viridis", norm=norm, linewidths=0)
        ax.set_aspect(1.0 / max(math.cos(math.radians(float(np.mean(lat)))), 0.05), adjustable="datalim")
        ax.set_title(f"{label} (n={len(rows)}, mean {value.mean():.2f})", fontsize=9)
        ax.set_xlabel("longitude", fontsize=8)
        ax.set_ylabel("latitude", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.ticklabel_format(useOffset=False, style="plain")
    for ax in axes[len(shown):]:
        ax.set_axis_off()
    fig.colorbar(mappable, ax=list(axes[:len(shown)]), shrink=0.85,
                 label=f"predicted {study} score (1..10)" + (", hexagon mean" if hexbin else ""))
    omitted = len(panels) - len(shown)
    fig.suptitle(f"{study}: {len(points)} located images" + (f" ({omitted} smaller areas not shown)"
                                                             if omitted else ""))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    return {"out": str(out), "points": len(points), "without_coordinates": len(predictions) - len(points),
            "panels": len(shown), "panels_omitted": omitted}


def map_to_file(predictions, study: str, out, hexbin: bool = False, gridsize: int = 30,
                overwrite: bool = False) -> dict:
    """`perceptions map`: read a predictions file (.csv, .parquet, .geojson) and draw `study`'s scores to the
    picture `out`. `study` is a name or an alias. Returns `plot_score_map`'s summary."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise PerceptionsError(f"{out} already exists (use --overwrite to replace it)")
    if out.suffix.lower() not in PICTURE_SUFFIXES:
        raise PerceptionsError(f"{out}: use a .png, .pdf or .svg picture")
    name = find_study(study).name
    return plot_score_map(read_predictions(predictions), name, out, hexbin=hexbin, gridsize=gridsize,
                          source=str(predictions))
