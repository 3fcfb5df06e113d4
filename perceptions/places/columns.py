"""The columns of a metadata table, found among common spellings or named by the user (--path-col ...)."""
from __future__ import annotations

from perceptions.errors import DataError

# Each role and the spellings that are taken for it, in order of preference (compared lower-cased, stripped).
SPELLINGS = {
    "path": ("path", "file", "filename", "file_name", "image", "image_path", "filepath", "file_path"),
    "lat": ("lat", "latitude", "y"),
    "lon": ("lon", "lng", "long", "longitude", "x"),
    "heading": ("heading", "yaw", "compass_angle"),
    "pano_id": ("pano_id", "panoid", "id"),
    "captured_at": ("captured_at", "date", "timestamp"),
}
OPTIONS = {"path": "--path-col", "lat": "--lat-col", "lon": "--lon-col"}


def find_columns(columns, source, path_col: str | None = None, lat_col: str | None = None,
                 lon_col: str | None = None) -> dict[str, str | None]:
    """role -> the table's column for it (None when absent). A column the user named must exist; a table
    without a path column, or with only one of lat/lon, is one clear line listing its columns."""
    columns = [str(c) for c in columns]
    named = {"path": path_col, "lat": lat_col, "lon": lon_col}
    found: dict[str, str | None] = {}
    for role, spellings in SPELLINGS.items():
        if named.get(role):
            if named[role] not in columns:
                raise DataError(source, f"no column {named[role]!r} ({OPTIONS[role]}); it has: {_listed(columns)}")
            found[role] = named[role]
            continue
        lowered = {c.strip().lower(): c for c in reversed(columns)}
        found[role] = next((lowered[s] for s in spellings if s in lowered), None)
    if found["path"] is None:
        raise DataError(source, f"no image path column found (looked for {'/'.join(SPELLINGS['path'])}); it has: "
                                f"{_listed(columns)}; name it with --path-col")
    if (found["lat"] is None) != (found["lon"] is None):
        raise DataError(source, f"found a {'latitude' if found['lat'] else 'longitude'} column but no "
                                f"{'longitude' if found['lat'] else 'latitude'} column; it has: {_listed(columns)}; "
                                "name them with --lat-col and --lon-col")
    if found["pano_id"] == found["path"]:  # one column cannot be both
        found["pano_id"] = None
    return found


def _listed(columns) -> str:
    shown = ", ".join(columns[:30])
    return (shown + f" ... ({len(columns)} in all)") if len(columns) > 30 else (shown or "(no columns)")
