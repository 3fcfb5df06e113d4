"""Equirectangular 360 degree panoramas -> perspective views like the ones Place Pulse's raters saw.

`PanoramaViews` is the `views` hook of the predict pipeline (`predict.pipeline.iter_batches`, `predict.job`):
a file it recognises as a panorama (2:1 within 1% under `auto`; every file under `on`, a file not 2:1 being
skipped with the reason) is decoded once, at the smallest JPEG reduced-size decode that still gives the views
enough pixels (a view W px wide over a 90 degree field of view needs the panorama's 360 degrees >= 4W px), and
cut into views with py360convert's `e2p` (`[geo]` extra), each `resize_size` px square so the model's own
eval transform (resize, centre crop) applies unchanged. A view that is blank or nearly one colour (the
placeholder test of `perceptions check`: `data.image_check.placeholder_reason`) is skipped with the reason.

Heading convention: heading 0 is the panorama's centre column, headings grow clockwise, i.e. to the right in
the image (heading 90 is the column three quarters of the way across). When the metadata table gives the
panorama's own heading H (the compass direction of its centre column: `heading`/`yaw`/`compass_angle`), the
views are cut at H + 0/90/180/270 and `view_heading` is that compass heading (mod 360); without one it is the
heading relative to the centre column.

Rows: one per view (`level="view"`, `panorama` = source path, `view_heading`) and one per panorama
(`level="panorama"`, `n_views`, `<study>_score` = the mean over its views, `<study>_score_sd` their sample
standard deviation, `<study>_decile` the decile of the mean); ordinary images keep one row (`level="image"`).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from perceptions.data.images import ImageError
from perceptions.errors import PerceptionsError
from perceptions.extras import require
from perceptions.predict.writers import LOCATION_COLUMNS, prediction_columns

MODES = ("auto", "on", "off")
OUTPUTS = ("views", "panoramas", "both")
HEADINGS = (0.0, 90.0, 180.0, 270.0)
FOV = 90.0
ASPECT = 2.0
ASPECT_TOLERANCE = 0.01  # |width / height - 2| <= 2 * 1%
VIEW_COLUMNS = ("level", "panorama", "view_heading", "n_views")
JPEG_QUALITY = 92


def is_equirectangular(width: int, height: int) -> bool:
    return height > 0 and abs(width / height - ASPECT) <= ASPECT * ASPECT_TOLERANCE


def view_name(path, heading: float) -> str:
    """`<panorama stem>_h<heading, 3 digits>.jpg`, the file a view is saved as (--save-views)."""
    return f"{Path(path).stem}_h{int(round(heading)) % 360:03d}.jpg"


class PanoramaViews:
    """The `views` hook: `cut(path, side)` -> None (an ordinary image) or [(view_heading, PIL view or None,
    reason)]; `rows(...)` adds the view columns and one aggregate row per panorama to a batch's rows;
    `columns`, `row_key`, `key` and `select` tell `predict.job` how to merge and filter them."""

    key = "view_heading"  # the skipped file's extra column: which view of a file was skipped
    row_key = ("path", "level", "view_heading")

    def __init__(self, mode: str = "auto", output: str = "both", save_dir=None, headings=HEADINGS,
                 fov: float = FOV, pitch: float = 0.0):
        if mode not in MODES:
            raise PerceptionsError(f"--panorama must be one of {', '.join(MODES)}, got {mode!r}")
        if output not in OUTPUTS:
            raise PerceptionsError(f"--panorama-output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        if not 0 < fov < 180:
            raise PerceptionsError(f"a view's field of view must be between 0 and 180 degrees, got {fov}")
        if mode == "on":
            require("py360convert", "geo")  # now, one line; under auto only when a panorama is met
        self.mode, self.output, self.fov, self.pitch = mode, output, float(fov), float(pitch)
        self.headings = tuple(float(h) for h in headings)
        self.save_dir = str(save_dir) if save_dir else None
        self.own_heading: dict[str, float] = {}  # panorama path -> compass heading of its centre column

    # ---------------------------------------------------------------------------------------- planning

    def set_headings(self, paths, headings) -> None:
        """The panoramas' own headings from a metadata table (non-finite values are left out)."""
        values = pd.to_numeric(pd.Series(list(headings)), errors="coerce").to_numpy(dtype=float)
        for path, value in zip(paths, values):
            if math.isfinite(value):
                self.own_heading[str(path)] = float(value) % 360

    def prepare(self, paths, overwrite: bool) -> None:
        """Before any scoring: refuse to overwrite views saved earlier (--save-views) unless asked."""
        if not self.save_dir:
            return
        folder = Path(self.save_dir)
        if folder.exists() and not folder.is_dir():
            raise PerceptionsError(f"--save-views {folder}: is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        if overwrite:
            return
        existing = {p.name for p in folder.iterdir() if p.name.lower().endswith(".jpg")}
        for path in paths:
            taken = sorted(n for n in existing if n.startswith(f"{Path(path).stem}_h"))
            if taken:
                raise PerceptionsError(f"--save-views {folder} already holds views of {path} ({taken[0]}); use "
                                       "--overwrite to replace them or another folder")

    # --------------------------------------------------------------------------------------- cutting

    def needed_width(self, side: int) -> int:
        """The smallest equirectangular width that gives a `side` px view over `fov` degrees its pixels."""
        return int(math.ceil(360.0 / self.fov * side))

    def cut(self, path, side: int):
        """-> None when `path` is not cut (an ordinary image, or unreadable: the ordinary path reports it), else
        [(view_heading, PIL RGB view side x side or None, reason)]. Raises ImageError for a file that is not
        2:1 under `on`."""
        from PIL import Image

        try:
            with Image.open(path) as img:
                width, height = img.size
        except Exception:  # noqa: BLE001 - the ordinary decode says what is wrong with it
            return None
        if not is_equirectangular(width, height):
            if self.mode == "on":
                raise ImageError(path, f"not an equirectangular panorama: {width}x{height} is not 2:1 "
                                       "(--panorama on)")
            return None
        arr = self._equirect(path, side)
        own = self.own_heading.get(os.fspath(path))
        return [self._view(arr, path, rel, own, side) for rel in self.headings]

    def _equirect(self, path, side: int) -> np.ndarray:
        """Decode once (JPEG reduced-size decoding down to the width the views need), then bring it to that
        width exactly (antialiased), so every view samples a panorama of the right density."""
        from PIL import Image

        from perceptions.data.images import open_rgb

        need = self.needed_width(side)
        image = open_rgb(path, min_side=need // 2)
        if image.width > need:
            image = image.resize((need, need // 2), Image.Resampling.BILINEAR, reducing_gap=2.0)
        return np.asarray(image)

    def _view(self, arr, path, rel: float, own, side: int):
        from PIL import Image

        from perceptions.data.image_check import placeholder_reason

        e2p = require("py360convert", "geo").e2p
        u = (rel + 180.0) % 360.0 - 180.0  # e2p: -180..180, + to the right
        view = Image.fromarray(np.ascontiguousarray(e2p(arr, self.fov, u, self.pitch, (side, side))))
        heading = (rel + own) % 360.0 if own is not None else rel % 360.0
        if self.save_dir:
            self._save(view, Path(self.save_dir) / view_name(path, heading))
        reason = placeholder_reason(view)
        if reason:
            return heading, None, f"view at heading {heading:g}: {reason}"
        return heading, view, ""

    @staticmethod
    def _save(view, target: Path) -> None:
        from perceptions.files import atomic_path

        with atomic_path(target) as tmp:
            view.save(tmp, format="JPEG", quality=JPEG_QUALITY)

    # ------------------------------------------------------------------------------------------ rows

    def columns(self, studies) -> list[str]:
        return view_columns(studies)

    def rows(self, model, rows: pd.DataFrame, headings) -> pd.DataFrame:
        """A batch's rows (one per scored view or image, `_index` first) -> with the view columns and, after
        the views of each panorama, its aggregate row."""
        return with_panorama_rows(model.studies, model.deciles, rows, headings)

    def fill(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Rows written without the view columns (an earlier run without panoramas) -> whole-image rows."""
        if "level" in frame.columns:
            return frame
        frame = frame.copy()
        frame["level"], frame["panorama"], frame["view_heading"] = "image", "", np.nan
        frame["n_views"] = pd.array([pd.NA] * len(frame), dtype="Int64")
        for column in [c for c in frame.columns if str(c).endswith("_score") and f"{c}_sd" not in frame.columns]:
            frame[f"{column}_sd"] = np.nan
        return frame

    def select(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The merged rows -> those --panorama-output asks for; without any panorama, the plain columns."""
        if "level" not in rows.columns:
            return rows
        level = rows["level"].astype(str)
        if not level.isin(["view", "panorama"]).any():
            sd = [c for c in rows.columns if str(c).endswith("_score_sd")]
            return rows.drop(columns=list(VIEW_COLUMNS) + sd)
        if self.output == "views":
            rows = rows[level != "panorama"]
        elif self.output == "panoramas":
            rows = rows[level != "view"]
        return rows.reset_index(drop=True)


def view_columns(studies) -> list[str]:
    """prediction_columns with the view columns after the location and `<study>_score_sd` after the scores."""
    base = prediction_columns(studies)
    n_loc = len(LOCATION_COLUMNS)
    scores = base[n_loc:n_loc + len(studies)]
    return (base[:n_loc] + list(VIEW_COLUMNS) + scores + [f"{s}_score_sd" for s in studies]
            + base[n_loc + len(studies):])


def with_panorama_rows(studies, deciles, rows: pd.DataFrame, headings) -> pd.DataFrame:
    """rows (`_index`, prediction columns) + the view heading of each (None: a whole image) -> view rows and
    one panorama row per `_index` with views: mean, sample sd (ddof 1) and the decile of the mean."""
    heading = pd.to_numeric(pd.Series(list(headings), dtype=object), errors="coerce").to_numpy(dtype=float)
    is_view = np.isfinite(heading)
    rows = rows.reset_index(drop=True).copy()
    rows["level"] = np.where(is_view, "view", "image")
    rows["panorama"] = np.where(is_view, rows["path"].astype(str), "")
    rows["view_heading"] = heading
    rows["n_views"] = pd.array([pd.NA] * len(rows), dtype="Int64")
    for s in studies:
        rows[f"{s}_score_sd"] = np.nan
    columns = ["_index"] + view_columns(studies)
    views = rows[is_view]
    if not len(views):
        return rows[columns]
    scores = [f"{s}_score" for s in studies]
    grouped = views.groupby("_index", sort=False)
    mean, sd = grouped[scores].mean(), grouped[scores].std(ddof=1)
    panos = grouped[["path", *LOCATION_COLUMNS[1:]]].first()
    panos["level"], panos["panorama"], panos["view_heading"] = "panorama", panos["path"], np.nan
    panos["n_views"] = pd.array(grouped.size().to_numpy(), dtype="Int64")
    panos[scores] = mean.to_numpy()
    panos[[f"{s}_score_sd" for s in studies]] = sd.to_numpy()
    panos[[f"{s}_decile" for s in studies]] = deciles(mean.to_numpy())
    panos = panos.reset_index()
    out = pd.concat([rows[columns], panos[columns]], ignore_index=True)
    return out.iloc[out["_index"].to_numpy().argsort(kind="stable")].reset_index(drop=True)
