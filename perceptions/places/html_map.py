"""`perceptions map --html`: one self-contained HTML file with an interactive Leaflet map.

Leaflet's JavaScript and CSS (vendored in `static/leaflet/`) and the data are inlined, so the file opens
offline; an OpenStreetMap tile background is added only when the browser is online. Predictions draw as points
coloured by `<study>_score`, an aggregate (`perceptions aggregate`) as hexagons/areas/segments coloured by
`<study>_mean`, insufficient cells greyed and dashed; a control switches the study, with a legend; each feature
has a popup (scores and deciles, or n and the cell's statistics; with `thumbnails`, a small embedded picture).
"""
from __future__ import annotations

import base64
import io
import json
import math
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from perceptions.errors import PerceptionsError
from perceptions.files import atomic_write, jsonable
from perceptions.places.geofiles import read_layer
from perceptions.studies import study as find_study

THUMBNAIL_PX = 160
MAX_THUMBNAILS = 5000  # beyond this the file would weigh tens of MB


def leaflet_assets() -> tuple[str, str]:
    folder = resources.files("perceptions.places") / "static" / "leaflet"
    js = (folder / "leaflet.js").read_text(encoding="utf-8")
    js = "\n".join(line for line in js.splitlines() if not line.startswith("//# sourceMappingURL"))
    return js, (folder / "leaflet.css").read_text(encoding="utf-8")


def map_data(gdf, first_study: str | None = None, thumbnails: bool = False, base=None) -> dict:
    """The GeoJSON and the settings the page's script reads."""
    points = bool(len(gdf)) and gdf.geometry.geom_type.eq("Point").all()
    suffix = "_score" if points or "n" not in gdf.columns else "_mean"
    studies = [c.removesuffix(suffix) for c in gdf.columns if str(c).endswith(suffix)]
    if not studies:
        raise PerceptionsError("nothing to colour by: no <study>_score (predictions) or <study>_mean (aggregate) "
                               "columns")
    if first_study:
        name = _study_name(first_study, studies)
        studies = [name] + [s for s in studies if s != name]
    keep = [c for c in gdf.columns if c != gdf.geometry.name and (
        any(str(c).startswith(f"{s}_") for s in studies) or c in ("path", "city", "n", "sufficient", "h3", "level")
        or not points)]
    ranges = {}
    for s in studies:
        values = pd.to_numeric(gdf[f"{s}{suffix}"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        finite = values[np.isfinite(values)]
        ranges[s] = [float(finite.min()), float(finite.max())] if len(finite) else [0.0, 1.0]
    features = []
    geometries = json.loads(gdf.geometry.to_json())["features"] if len(gdf) else []
    records = pd.DataFrame(gdf[keep]).to_dict(orient="records")
    if thumbnails and len(records) > MAX_THUMBNAILS:
        raise PerceptionsError(f"--thumbnails embeds a picture per point; {len(records)} points is too many "
                               f"(at most {MAX_THUMBNAILS}): map a part of the predictions")
    for geometry, record in zip(geometries, records):
        props = {k: _clean(v) for k, v in jsonable(record).items()}
        if thumbnails and points and record.get("path"):
            props["_thumbnail"] = thumbnail_uri(record["path"], base)
        features.append({"type": "Feature", "geometry": geometry["geometry"], "properties": props})
    label = "h3" if "h3" in gdf.columns else "path" if points else next(
        (c for c in keep if c not in ("n", "sufficient") and not any(str(c).startswith(f"{s}_") for s in studies)),
        None)
    insufficient = "sufficient" in gdf.columns and not gdf["sufficient"].astype(bool).all()
    min_n = int(gdf.loc[gdf["sufficient"].astype(bool), "n"].min()) if insufficient and gdf["sufficient"].any() else 0
    return {"type": "FeatureCollection", "features": features, "studies": studies,
            "column": {s: f"{s}{suffix}" for s in studies}, "ranges": ranges,
            "kind": "points" if points else "cells", "what": "score" if suffix == "_score" else "mean score",
            "label": label, "insufficient": bool(insufficient), "min_n": min_n}


def _clean(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _study_name(name: str, studies) -> str:
    if name in studies:
        return name
    try:
        found = find_study(name).name
    except (PerceptionsError, KeyError, ValueError):
        found = None
    if found in studies:
        return found
    raise PerceptionsError(f"no study {name!r} in the file (studies present: {', '.join(studies)})")


def thumbnail_uri(path, base=None) -> str | None:
    """A small JPEG of the image as a data: URI, or None when it cannot be read."""
    from PIL import Image, ImageOps

    path = Path(path)
    if not path.is_absolute() and base is not None and not path.exists():
        path = Path(base) / path
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
            image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            buf = io.BytesIO()
            image.save(buf, format="JPEG", quality=70)
    except Exception:  # noqa: BLE001 - a missing or unreadable picture just has no thumbnail
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def render_html(data: dict, title: str) -> str:
    template = (resources.files("perceptions.places") / "templates" / "map.html").read_text(encoding="utf-8")
    js, css = leaflet_assets()
    payload = json.dumps(data, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")
    title = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    # Replaced last to first, so the data (user text) is never searched for the other markers.
    return (template.replace("/*LEAFLET_CSS*/", css).replace("__TITLE__", title)
            .replace("/*LEAFLET_JS*/", js.replace("</script", "<\\/script")).replace("__DATA__", payload))


def write_html_map(source, out, study: str | None = None, thumbnails: bool = False, overwrite: bool = False) -> dict:
    """Predictions or an aggregate -> a self-contained HTML map at `out`. Returns a summary."""
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise PerceptionsError(f"{out}: an HTML map is written to a .html file")
    if out.exists() and not overwrite:
        raise PerceptionsError(f"{out} already exists (use --overwrite to replace it)")
    gdf = read_layer(source)
    data = map_data(gdf, study, thumbnails, base=Path(source).parent)
    with atomic_write(out) as f:
        f.write(render_html(data, f"perceptions: {Path(source).name}"))
    return {"out": str(out), "features": len(data["features"]), "kind": data["kind"], "studies": data["studies"]}
