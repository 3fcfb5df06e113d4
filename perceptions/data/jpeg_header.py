"""What a JPEG's header says, read from its bytes without decoding: size, colour components, EXIF orientation.

`load_rgb` uses it to hand an ordinary JPEG (the bulk of any street-image folder) straight to libjpeg-turbo, with
no PIL image opened first: PIL's open and EXIF parse cost a tenth of a 400x300 photo's whole loading time
(benchmarks/RESULTS.md, section 3). Anything this reader is unsure of answers None, and the caller takes PIL's
route, which reads every file and words every error.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

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
