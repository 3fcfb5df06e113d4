"""The images `serve` may show: the `--images` folder indexed once at start-up, by opaque id.

Ids are the Place Pulse location ids of the file names (`{lat}_{lon}_{id}_{City}.jpg`, what
`perceptions.data.placepulse.list_images` reads), so the votes the vote page collects join the images the way
`perceptions score` and `train` join them. The server never builds a path from a request: `/images/<id>` is a
dictionary look-up in this index, whose paths are real paths inside the folder's real path (a symlink pointing
out of the folder is left out at start-up).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from perceptions.errors import PerceptionsError

log = logging.getLogger(__name__)

MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}


class ImageIndex:
    """id -> real path of every servable image under `folder` (see the module docstring)."""

    def __init__(self, folder):
        from perceptions.data.placepulse import list_images

        self.folder = Path(folder)
        if not self.folder.exists():
            raise PerceptionsError(f"--images {self.folder}: no such folder")
        table = list_images(self.folder)  # a PerceptionsError for a file that is not a folder
        root = os.path.realpath(self.folder)
        self._paths: dict[str, str] = {}
        unnamed, outside, duplicates = [], [], []
        for path, image_id in zip(table["path"], table["location_id"]):
            if not isinstance(image_id, str) or not image_id:
                unnamed.append(path)
                continue
            real = os.path.realpath(path)
            # commonpath, not startswith: /data/images2 is not inside /data/images.
            if os.path.commonpath([real, root]) != root or not os.path.isfile(real):
                outside.append(path)
                continue
            if image_id in self._paths:
                duplicates.append(path)
                continue
            self._paths[image_id] = real
        if outside:
            log.warning("%s: %d image(s) left out: a link pointing outside the folder (or to no file), e.g. %s",
                        self.folder, len(outside), outside[0])
        if duplicates:
            log.warning("%s: %d image(s) left out: their location id is already taken by another file (the "
                        "first in path order is kept), e.g. %s", self.folder, len(duplicates), duplicates[0])
        if unnamed:
            log.warning("%s: %d image(s) left out: not named {lat}_{lon}_{id}_{City}.jpg as Place Pulse's images "
                        "are, so they have no id that votes could name, e.g. %s",
                        self.folder, len(unnamed), unnamed[0])
        if len(self._paths) < 2:
            found = f"{len(table)} image file(s), {len(self._paths)} usable" if len(table) else "no .jpg/.png images"
            raise PerceptionsError(f"--images {self.folder}: {found}; serve needs at least two images named "
                                   "{lat}_{lon}_{id}_{City}.jpg (as `perceptions synth` and Place Pulse 2.0 name "
                                   "them), each with its own id")
        self.ids: list[str] = list(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __contains__(self, image_id) -> bool:
        return isinstance(image_id, str) and image_id in self._paths

    def path(self, image_id: str) -> str | None:
        """The real path of an indexed id, None for anything else (never a path built from the id)."""
        return self._paths.get(image_id) if isinstance(image_id, str) else None

    @staticmethod
    def media_type(path: str) -> str:
        return MEDIA_TYPES.get(os.path.splitext(path)[1].lower(), "application/octet-stream")
