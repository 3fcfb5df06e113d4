"""Uploads to `/api/score`: read with a size limit, checked from their bytes, decoded as `predict` decodes files.

The limit holds twice: a Content-Length over it is refused before a byte is read, and a body that grows past
it while streaming (chunked, or a lying header) is refused as soon as it does. The type comes from the bytes
(Pillow's identification and `verify`), never from the file name or the Content-Type, and only formats a camera
or a browser produces are opened (an EPS, for one, would run Ghostscript). The pixel count is checked against
Pillow's decompression-bomb limit before anything is decoded. Decoding is then predict's own (see
`serve.scoring`), on a private temporary copy of the bytes (`as_file`): EXIF orientation, 16-bit and palette
modes, alpha flattened on white, reduced-scale JPEG decoding, so a photo scores exactly as the same file would
with `perceptions predict`.
"""
from __future__ import annotations

import io
import tempfile
from contextlib import contextmanager

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
FIELD = "image"
MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around the file
DRAIN_MAX = 64 * 2**20       # read (and drop) this much of a refused body so the client hears the 413


class UploadError(Exception):
    """An upload refused with HTTP `status` and a one-line `message`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


async def read_image_field(request, max_bytes: int) -> bytes:
    """The bytes of the multipart field `image` of `request`; UploadError (413, 415, 400) otherwise."""
    from starlette.formparsers import MultiPartException, MultiPartParser

    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise UploadError(415, f"send the photo as multipart/form-data in a field named '{FIELD}'")
    limit = max_bytes + MULTIPART_SLACK
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        await _drain(request)
        raise UploadError(413, f"upload of {_mb(int(declared))} is over the limit of {_mb(max_bytes)} "
                               "(--max-upload-mb)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            await _drain(request)
            raise UploadError(413, f"upload is over the limit of {_mb(max_bytes)} (--max-upload-mb)")

    async def once():
        yield bytes(body)

    try:
        form = await MultiPartParser(request.headers, once(), max_files=1, max_fields=8,
                                     max_part_size=MULTIPART_SLACK).parse()
    except MultiPartException as exc:
        raise UploadError(400, f"bad multipart body: {exc.message}") from None
    try:
        upload = form.get(FIELD)
        if upload is None or isinstance(upload, str):
            raise UploadError(400, f"no file in the field '{FIELD}' of the form")
        data = await upload.read()
    finally:
        await form.close()
    if not data:
        raise UploadError(400, "empty upload (0 bytes)")
    if len(data) > max_bytes:
        raise UploadError(413, f"upload of {_mb(len(data))} is over the limit of {_mb(max_bytes)} (--max-upload-mb)")
    return data


async def _drain(request) -> None:
    """Read what is left of a refused body, up to DRAIN_MAX, so the client gets the answer rather than a reset
    connection; a bigger one is cut off."""
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > DRAIN_MAX:
                break
    except Exception:  # noqa: BLE001 - the client went away, or the stream was read already: nothing to drain
        pass


def sniff(data: bytes, max_pixels: int) -> str:
    """The image format of `data` (one of ALLOWED_FORMATS), or UploadError: 415 not an image, 413 too many
    pixels, 400 broken."""
    from PIL import Image, UnidentifiedImageError

    Image.init()  # registers every plugin (once), so each allowed format can be named below
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise UploadError(413, f"{width}x{height} pixels is more than the limit of {max_pixels:,} "
                                       "(refused as a possible decompression bomb)")
            img.verify()
            return img.format
    except UploadError:
        raise
    except Image.DecompressionBombError as exc:
        raise UploadError(413, f"refused as a possible decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise UploadError(415, "not an image: send a JPEG, PNG, WebP, GIF, BMP or TIFF photo") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        raise UploadError(400, f"truncated or corrupt image ({_one_line(exc)})") from None


@contextmanager
def as_file(data: bytes):
    """A private temporary file holding `data`, removed on exit: what the project's file decoders read."""
    with tempfile.NamedTemporaryFile(prefix="perceptions-upload-", suffix=".img") as f:
        f.write(data)
        f.flush()
        yield f.name


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
