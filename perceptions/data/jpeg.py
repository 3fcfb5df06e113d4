"""JPEG specifics of image reading: what a file's header says (size, colour components, EXIF orientation, read
from its bytes without decoding), the reduced scale a large one can be decoded at, and libjpeg-turbo's decoding
of a plain one straight into a tensor.

`load_rgb` (perceptions/data/images.py) hands an ordinary JPEG (the bulk of any street-image folder) to
libjpeg-turbo with no PIL image opened first: PIL's open and EXIF parse cost a tenth of a 400x300 photo's whole
loading time (benchmarks/RESULTS.md, section 3). Anything the header reader is unsure of answers None, and the
caller takes PIL's route, which reads every file and words every error.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import NamedTuple

# Without a target size, big JPEGs are decoded at a reduced scale (down to 1/8) so that no side exceeds this:
# still far more pixels than any backbone looks at, and a 12,000 x 9,000 photo decodes in a fraction of the time.
MAX_DECODE_SIDE = 4096
# A JPEG's header (with its EXIF block) is read from this many first bytes; a longer one goes PIL's way.
HEADER_BYTES = 65536

# Start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic): they carry the size.
# C4 (Huffman tables), C8 (reserved) and CC (arithmetic conditioning) share the range but are not frames.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_NO_LENGTH = frozenset([0x01, *range(0xD0, 0xD8)])  # TEM and RSTn stand alone
_ORIENTATION_TAG = 0x0112


class JpegHeader(NamedTuple):
    width: int
    height: int
    components: int      # 1 gray, 3 colour (YCbCr or RGB), 4 CMYK/YCCK
    orientation: int     # EXIF orientation; 1 when the file has no EXIF orientation


def read_jpeg_header(data) -> JpegHeader | None:
    """The header of the JPEG in `data` (bytes-like), or None when it is not a JPEG this reader is sure of: no
    SOI, a cut-off segment, no frame before the scan, or an EXIF block it cannot read (PIL then decides)."""
    view = memoryview(data)
    if len(view) < 4 or view[0] != 0xFF or view[1] != 0xD8:
        return None
    orientation, pos, end = 1, 2, len(view)
    while pos + 4 <= end:
        if view[pos] != 0xFF:
            return None
        marker = view[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _NO_LENGTH:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or the scan, before any frame header
            return None
        (length,) = struct.unpack_from(">H", view, pos + 2)
        body, pos = pos + 4, pos + 2 + length
        if length < 2 or pos > end:
            return None
        if marker in _SOF:
            if length < 8:
                return None
            height, width, components = struct.unpack_from(">HHB", view, body + 1)
            return JpegHeader(width, height, components, orientation) if width and height else None
        if marker == 0xE1 and bytes(view[body:body + 6]) == b"Exif\0\0" and orientation == 1:
            found = _exif_orientation(view[body + 6:pos])
            if found is None:
                return None
            orientation = found
    return None


def _exif_orientation(tiff) -> int | None:
    """The orientation tag of IFD0 in a TIFF block (1 when absent); None when the block cannot be read."""
    if len(tiff) < 8 or bytes(tiff[:2]) not in (b"II", b"MM"):
        return None
    order = "<" if bytes(tiff[:2]) == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", tiff, 4)
    if ifd + 2 > len(tiff):
        return None
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    if ifd + 2 + 12 * count > len(tiff):
        return None
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag, kind, n = struct.unpack_from(order + "HHI", tiff, entry)
        if tag == _ORIENTATION_TAG:
            if kind != 3 or n != 1:  # SHORT, one value
                return None
            (value,) = struct.unpack_from(order + "H", tiff, entry + 8)
            return value
    return 1


def draft_target(size: tuple[int, int], min_side: int | None) -> tuple[int, int] | None:
    """The size to ask `Image.draft` for, or None when a JPEG of `size` is decoded at full scale."""
    width, height = size
    if min_side is None:
        # The smallest JPEG reduction (1/2, 1/4, 1/8) that brings the longer side within MAX_DECODE_SIDE;
        # draft picks the strongest reduction that still covers the requested size, so ask for exactly that.
        factor = 1
        while max(width, height) > MAX_DECODE_SIDE * factor and factor < 8:
            factor *= 2
        return (-(-width // factor), -(-height // factor)) if factor > 1 else None
    if min(width, height) < 2 * min_side:
        return None  # no power-of-two reduction is possible
    return (min_side, min_side)  # both sides at least min_side, whatever the EXIF rotation does afterwards


def plain_jpeg(path: Path, max_pixels: int, min_side: int | None):
    """A JPEG that needs nothing but decoding (full scale, upright as stored, gray or colour, within max_pixels),
    judged from its header bytes alone -> uint8 (3, H, W) tensor; None for any other file or any doubt, and when
    decoding fails: PIL's route then reads the file and words the error."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
            header = read_jpeg_header(head)
            if header is None or header.orientation != 1 or header.components not in (1, 3) or \
                    header.width * header.height > max_pixels or \
                    draft_target((header.width, header.height), min_side) is not None:
                return None
            return decode_jpeg(head + f.read())
    except OSError:
        return None


def decode_jpeg(data: bytes):
    """A whole JPEG file's bytes -> RGB uint8 (3, H, W) tensor by torchvision's decoder; None if that fails (PIL
    then decodes it, and words any error as open_rgb does). Called as its operator: `torchvision.io.decode_jpeg`,
    deprecated for TorchCodec since torchvision 0.29, warns at every call."""
    try:
        import torch
        from torchvision.io import image  # loads torchvision's image operators

        pixels = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        return torch.ops.image.decode_jpeg(pixels, image.ImageReadMode.RGB.value, False)
    except Exception:  # noqa: BLE001 - a broken file, or a torchvision without the operator
        return None
