"""`PlaceSources`: the images of a predict run and where each was taken.

Inputs are files, folders and lists as before (`predict.inputs`), plus metadata tables (`tables`). Where each
image is, in order: its table row (authoritative for the images it lists, even when its coordinates are
missing), else its EXIF GPS, else a Place Pulse-style name. Every coordinate is checked (finite, latitude in
-90..90, longitude in -180..180): a row that fails is still scored and written, with an empty location, and
counted in the summary. The table's other columns are carried through to the output unchanged.

`views` (a `panoramas.PanoramaViews`, or None) cuts panoramas into views; a table's heading column gives each
panorama its own heading. Every view row of a panorama has the panorama's path, so it gets its location too.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from perceptions.predict.inputs import ImageSources, discover_images
from perceptions.predict.writers import LOCATION_COLUMNS
from perceptions.places.exif import exif_latlon
from perceptions.places.tables import is_path_list, is_table, read_table

FILLED_FROM_TABLE = ("location_id", "city")  # output columns a table may fill (else from the image's name)


class PlaceSources(ImageSources):
    def __init__(self, images_dir=None, path_col=None, lat_col=None, lon_col=None, use_exif: bool = True,
                 views=None):
        self.images_dir, self.use_exif, self.views = images_dir, use_exif, views
        self.names = {"path_col": path_col, "lat_col": lat_col, "lon_col": lon_col}
        self.table = pd.DataFrame(columns=["path", "lat", "lon"])
        self.roles: list[dict] = []

    def discover(self, inputs) -> list[str]:
        if isinstance(inputs, (str, os.PathLike)):
            inputs = [inputs]
        paths: list[str] = []
        tables = []
        for item in inputs:
            if is_table(item) and not is_path_list(item):
                rows, roles = read_table(item, self.images_dir, **self.names)
                tables.append(rows)
                self.roles.append(roles)
                if self.views is not None and roles.get("heading"):
                    self.views.set_headings(rows["path"], rows[roles["heading"]])
                paths.extend(rows["path"])
            else:
                paths.extend(discover_images([item]))
        if tables:
            table = pd.concat(tables, ignore_index=True)
            self.table = table[~table["path"].duplicated()].reset_index(drop=True)
        return list(dict.fromkeys(paths))

    def annotate(self, rows: pd.DataFrame):
        rows = rows.reset_index(drop=True).copy()
        lat = pd.to_numeric(rows["lat"], errors="coerce").to_numpy(dtype=float, copy=True)
        lon = pd.to_numeric(rows["lon"], errors="coerce").to_numpy(dtype=float, copy=True)
        source = np.where(np.isfinite(lat) & np.isfinite(lon), "name", "").astype(object)
        position = pd.Series(np.arange(len(self.table)), index=self.table["path"])
        at = rows["path"].map(position)
        listed = at.notna().to_numpy()
        if listed.any():
            index = at[listed].astype(int).to_numpy()
            lat[listed] = self.table["lat"].to_numpy(dtype=float)[index]
            lon[listed] = self.table["lon"].to_numpy(dtype=float)[index]
            source[listed] = "table"
        if self.use_exif:
            cache: dict = {}  # the views of a panorama share its path
            for i in np.flatnonzero(~listed):
                path = rows.at[i, "path"]
                found = cache[path] if path in cache else cache.setdefault(path, exif_latlon(path))
                if found is not None:
                    lat[i], lon[i] = found
                    source[i] = "exif"
        finite = np.isfinite(lat) & np.isfinite(lon)
        valid = finite & (np.abs(lat) <= 90) & (np.abs(lon) <= 180)
        rows["lat"] = np.where(valid, lat, np.nan)
        rows["lon"] = np.where(valid, lon, np.nan)
        notes = {"located_from": {s: int(((source == s) & valid).sum()) for s in ("table", "exif", "name")},
                 "without_location": int((~valid).sum()), "out_of_range": int((finite & ~valid).sum())}
        return self._carry(rows, at, listed), notes

    def _carry(self, rows, at, listed) -> pd.DataFrame:
        carried = [c for c in self.table.columns if c not in ("path", "lat", "lon")]
        if not carried:
            return rows
        index = at.fillna(-1).astype(int).to_numpy()
        extra = self.table[carried].reindex(index).reset_index(drop=True)
        for column in FILLED_FROM_TABLE:
            if column in extra.columns:
                value = extra.pop(column)
                use = listed & value.notna().to_numpy() & (value.astype(str).to_numpy() != "")
                rows[column] = np.where(use, value.astype(str), rows[column].astype(str))
        taken = set(rows.columns) | set(LOCATION_COLUMNS)
        extra.columns = [f"{c}_input" if c in taken else c for c in extra.columns]
        return pd.concat([rows, extra], axis=1)
