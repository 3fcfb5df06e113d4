"""A corpus of awkward input files, generated with PIL and raw bytes (no committed binaries).

`write_corpus(folder, base)` writes one file per case into `folder` and returns {case: Case}. Each case says
what the project must do with it: "convert" (read and score it: odd formats become plain RGB) or "skip"
(report it as unreadable and go on). `name_of(case, ext)` lets the caller choose file names, so the same corpus
can sit in a predict folder (free names) or in a PP2 images/ folder (names that carry location ids).

Cases: zero-byte file, truncated JPEG, text file named .jpg, PNG with alpha, 16-bit PNG, grayscale JPEG, CMYK
JPEG, EXIF-rotated JPEG, decompression-bomb header (a small PNG that claims 50,000 x 50,000 pixels), a path with
spaces and non-ASCII letters, a file symlink that points to itself (ELOOP), a folder symlink back to its parent
(a loop for walkers that follow links), and an unreadable file (chmod 000; root reads it anyway, so it is
"convert" when running as root and "skip" otherwise).
"""
from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SPACED_FOLDER = "Straße mit Leerzeichen ünd Ümläuten"


@dataclass
class Case:
    path: Path
    expect: str  # "convert" or "skip"


def picture(seed: int, size=(96, 72)) -> Image.Image:
    """A structured RGB picture (sky, road, blocks), distinct per seed."""
    rng = np.random.default_rng(seed)
    w, h = size
    pixels = np.zeros((h, w, 3), dtype=np.uint8)
    pixels[: h // 3] = rng.integers(120, 255, 3)
    pixels[h // 3:] = rng.integers(0, 140, 3)
    for _ in range(4):
        x, y = rng.integers(0, w - 8), rng.integers(0, h - 8)
        pixels[y:y + rng.integers(4, h // 2), x:x + rng.integers(4, w // 3)] = rng.integers(0, 255, 3)
    return Image.fromarray(pixels)


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    """A ~100-byte PNG whose header claims width x height RGB pixels (7.5 GB decoded)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b""))


def write_corpus(folder, name_of=None, seed: int = 100) -> dict[str, Case]:
    """Write every case into `folder`. name_of(case, ext) -> file name (default: '<case><ext>')."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name_of = name_of or (lambda case, ext: f"{case}{ext}")
    cases: dict[str, Case] = {}

    def put(case: str, ext: str, data: bytes, expect: str, subfolder: str | None = None) -> Path:
        where = folder / subfolder if subfolder else folder
        where.mkdir(parents=True, exist_ok=True)
        path = where / name_of(case, ext)
        path.write_bytes(data)
        cases[case] = Case(path, expect)
        return path

    base = picture(seed)
    put("zero_byte", ".jpg", b"", "skip")
    whole = jpeg_bytes(base)
    put("truncated_jpeg", ".jpg", whole[: len(whole) // 2], "skip")
    put("text_named_jpg", ".jpg", b"this is not an image, just some text\n" * 20, "skip")

    rgba = base.convert("RGBA")
    alpha = np.full((base.height, base.width), 255, dtype=np.uint8)
    alpha[:, : base.width // 2] = 0  # half transparent
    rgba.putalpha(Image.fromarray(alpha))
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    put("png_alpha", ".png", buf.getvalue(), "convert")

    gray16 = (np.asarray(base.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(gray16).save(buf, "PNG")
    assert Image.open(io.BytesIO(buf.getvalue())).mode.startswith("I"), "PIL must write a 16-bit PNG"
    put("png_16bit", ".png", buf.getvalue(), "convert")

    put("gray_jpeg", ".jpg", jpeg_bytes(picture(seed + 1).convert("L")), "convert")
    put("cmyk_jpeg", ".jpg", jpeg_bytes(picture(seed + 2).convert("CMYK")), "convert")

    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    put("exif_rotated", ".jpg", jpeg_bytes(picture(seed + 3), exif=exif.tobytes()), "convert")

    put("bomb_header", ".png", bomb_png(), "skip")
    put("spaces_non_ascii", ".jpg", jpeg_bytes(picture(seed + 4)), "convert", subfolder=SPACED_FOLDER)

    loop = folder / name_of("symlink_loop", ".jpg")
    os.symlink(loop.name, loop)  # points to itself: stat() fails with ELOOP
    cases["symlink_loop"] = Case(loop, "skip")
    # A folder symlink back to its parent: a walker that follows links must not loop or list images twice.
    os.symlink("..", folder / SPACED_FOLDER / "back_to_parent")

    locked = put("unreadable", ".jpg", jpeg_bytes(picture(seed + 5)), "convert" if os.geteuid() == 0 else "skip")
    locked.chmod(0)
    return cases


def expected(cases: dict[str, Case], outcome: str) -> set[str]:
    return {c for c, case in cases.items() if case.expect == outcome}
