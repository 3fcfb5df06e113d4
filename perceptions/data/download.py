"""Fetch Place Pulse 2.0 and unpack it into the layout `train` reads.

    input/placepulse/images/*.JPG      every image of the archive (flattened: PP2 names are unique)
    input/placepulse/qscores.tsv       the per-image TrueSkill scores
    input/placepulse/votes.<ext>       the raw votes, when the archive has them

Downloads go to `<dest>/<archive name>.part` and are resumed with an HTTP Range request when a run is
cut short; the finished file is renamed, its size and SHA-256 reported. Only the standard library speaks HTTP.
Archive layouts vary between mirrors, so the unpacker looks for images, scores and votes anywhere inside,
including in zips nested in the zip (the original project shipped the labels as a separate meta.zip).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from http.client import HTTPException
from pathlib import Path

from perceptions.errors import PerceptionsError
from perceptions.progress import Progress

# The address given by the original Recode Perceptions README.
DEFAULT_URL = "https://www.dropbox.com/s/grzoiwsaeqrmc1l/place-pulse-2.0.zip?dl=1"
MANUAL_ROUTE = ("download the archive by hand (see input/README.md), then run "
                "`perceptions download placepulse --archive FILE.zip` to unpack it")
CHUNK = 1 << 20
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
TABLE_EXTENSIONS = (".tsv", ".csv")


def archive_name(url: str) -> str:
    """The archive's file name, from the last part of the URL path (query ignored)."""
    name = os.path.basename(urllib.parse.urlparse(url).path)
    return name if name.lower().endswith(".zip") else "place-pulse-2.0.zip"


def _network_error(url: str, exc: Exception, part: Path) -> PerceptionsError:
    reason = getattr(exc, "reason", None) or exc
    kept = part.stat().st_size if part.is_file() else 0
    retry = (f"{kept:,} bytes are kept in {part}: run the same command again to resume" if kept
             else "check the address and the connection")
    return PerceptionsError(f"could not download {url}: {reason}. {retry}, or {MANUAL_ROUTE}")


def fetch(url: str, target, progress: bool | None = None, timeout: float = 60.0) -> dict:
    """Download `url` to the file `target`, resuming a `target.part` left by an earlier run.

    Returns {"path", "bytes", "sha256", "resumed_from"}. A finished `target` is not downloaded again.
    """
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        raise PerceptionsError(f"--url must be an http:// or https:// address, got {url!r}")
    target = Path(target)
    part = target.with_name(target.name + ".part")
    resumed_from = 0
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        resumed_from = part.stat().st_size if part.is_file() else 0
        _download(url, part, resumed_from, progress, timeout)
        os.replace(part, target)
    return {"path": str(target), "bytes": target.stat().st_size, "sha256": sha256_of(target),
            "resumed_from": resumed_from}


def _download(url: str, part: Path, offset: int, progress: bool | None, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "perceptions-download/1"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the part file is already whole
            return
        raise _network_error(url, exc, part) from None
    except (urllib.error.URLError, HTTPException, OSError, ValueError) as exc:
        raise _network_error(url, exc, part) from None
    with response:
        if offset and response.status != 206:  # the server ignored the range: start again
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        mode = "ab" if offset else "wb"
        received = offset
        try:
            with open(part, mode) as out, Progress(total, part.name[:-5], unit="B", initial=offset,
                                                   enabled=progress) as bar:
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        except (HTTPException, OSError, socket.timeout) as exc:
            raise _network_error(url, exc, part) from None
    if total is not None and received < total:
        raise _network_error(url, ConnectionError(f"transfer stopped at {received:,} of {total:,} bytes"), part)


def sha256_of(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------- unpacking

def _role(name: str) -> str | None:
    """What an archive member is to us: 'image', 'qscores', 'votes', 'zip' or nothing."""
    base = os.path.basename(name)
    lower = base.lower()
    if not base or base.startswith("._") or "__MACOSX" in name:
        return None
    ext = os.path.splitext(lower)[1]
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext == ".zip":
        return "zip"
    if ext in TABLE_EXTENSIONS and ("qscore" in lower or "scores" in lower):
        return "qscores"
    if ext in TABLE_EXTENSIONS and "vote" in lower:
        return "votes"
    return None


def _walk(archive: zipfile.ZipFile, found: dict, where: str) -> None:
    for info in archive.infolist():
        if info.is_dir():
            continue
        role = _role(info.filename)
        if role == "zip":
            with archive.open(info) as inner_file, zipfile.ZipFile(inner_file) as inner:
                _walk(inner, found, f"{where}/{info.filename}")
        elif role == "image":
            found["images"] += 1
        elif role in ("qscores", "votes") and role not in found:
            found[role] = f"{where}/{info.filename}"


def _extract(archive: zipfile.ZipFile, out: Path, wanted: dict, where: str, bar) -> None:
    """Copy images (flattened) and the chosen tables out of `archive` and the zips inside it."""
    for info in archive.infolist():
        if info.is_dir():
            continue
        role = _role(info.filename)
        if role == "zip":
            with archive.open(info) as inner_file, zipfile.ZipFile(inner_file) as inner:
                _extract(inner, out, wanted, f"{where}/{info.filename}", bar)
            continue
        if role == "image":
            # Basename only: PP2 names are unique, and no member can write outside the images folder.
            target = out / "images" / os.path.basename(info.filename)
            bar.update(1)
        elif role in ("qscores", "votes") and wanted.get(role) == f"{where}/{info.filename}":
            ext = os.path.splitext(info.filename)[1].lower()
            target = out / ("qscores.tsv" if role == "qscores" and ext == ".tsv" else f"{role}{ext}")
        else:
            continue
        with archive.open(info) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)


def unpack_placepulse(archive_path, dest, progress: bool | None = None) -> dict:
    """Unpack a PP2 archive into `dest/placepulse/`; returns what was found where."""
    archive_path, out = Path(archive_path), Path(dest) / "placepulse"
    try:
        with zipfile.ZipFile(archive_path) as archive:
            found = {"images": 0}
            _walk(archive, found, "")
            if not found["images"]:
                raise PerceptionsError(f"{archive_path}: no images (.jpg/.png) inside; is it the Place Pulse archive?")
            (out / "images").mkdir(parents=True, exist_ok=True)
            with Progress(found["images"], "unpacking", unit="img", enabled=progress) as bar:
                _extract(archive, out, found, "", bar)
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise PerceptionsError(f"{archive_path}: not a readable zip archive ({exc}); delete it and download "
                               "again") from None
    tables = {role: sorted(str(p) for p in out.glob(f"{role}.*")) for role in ("qscores", "votes")}
    return {"folder": str(out), "images": found["images"], "qscores": (tables["qscores"] or [None])[0],
            "votes": (tables["votes"] or [None])[0]}


def download_placepulse(dest="input", url: str = DEFAULT_URL, archive=None, overwrite: bool = False,
                        progress: bool | None = None) -> dict:
    """Download (or take a local `archive`), check and unpack Place Pulse 2.0 under `dest/placepulse/`."""
    dest = Path(dest)
    out = dest / "placepulse"
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise PerceptionsError(f"{out} is not empty; pass --overwrite to unpack the archive over it")
    if archive is not None:
        archive = Path(archive)
        if not archive.is_file():
            raise PerceptionsError(f"{archive}: no such file")
        fetched = {"path": str(archive), "bytes": archive.stat().st_size, "sha256": sha256_of(archive),
                   "resumed_from": 0}
    else:
        fetched = fetch(url, dest / archive_name(url), progress=progress)
    unpacked = unpack_placepulse(fetched["path"], dest, progress=progress)
    return {"archive": fetched, **unpacked}
