"""perceptions/data/jpeg.py: a JPEG's size, components and EXIF orientation from its bytes, checked against
what PIL reads from the same files; any doubt must answer None (load_rgb then takes PIL's route)."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from perceptions.data.images import load_rgb, open_rgb
from perceptions.data.jpeg import read_jpeg_header


def _jpeg(mode="RGB", size=(64, 48), orientation=None, **save) -> bytes:
    rng = np.random.default_rng(0)
    channels = {"RGB": 3, "L": 1, "CMYK": 4}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    img = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        save["exif"] = exif.tobytes()
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90, **save)
    return out.getvalue()


@pytest.mark.parametrize("mode, save", [
    ("RGB", {}), ("L", {}), ("CMYK", {}), ("RGB", {"progressive": True}), ("RGB", {"subsampling": 0}),
    ("RGB", {"icc_profile": b"\0" * 3000}), ("RGB", {"comment": b"a street"}),
])
def test_header_matches_pil(mode, save):
    data = _jpeg(mode, (123, 45), **save)
    header = read_jpeg_header(data)
    with Image.open(io.BytesIO(data)) as img:
        assert (header.width, header.height) == img.size
        assert header.components == len(img.getbands())
    assert header.orientation == 1


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_exif_orientation_matches_pil(orientation):
    data = _jpeg(orientation=orientation)
    with Image.open(io.BytesIO(data)) as img:
        assert read_jpeg_header(data).orientation == img.getexif()[0x0112] == orientation


@pytest.mark.parametrize("data", [
    b"", b"\xff\xd8", b"GIF89a....", b"\x89PNG\r\n\x1a\n" + b"\0" * 40,
    _jpeg()[:40],                          # cut off inside the header segments
    b"\xff\xd8\xff\xda\x00\x08" + b"\0" * 20,  # a scan before any frame
    b"\xff\xd8\xff\xe1\x00\x10Exif\0\0MM\0*\0\0\0\x08",  # an EXIF block cut short
])
def test_unsure_answers_none(data):
    assert read_jpeg_header(data) is None


def test_fast_path_keeps_pil_pixels(tmp_path):
    """load_rgb's tensor for a plain JPEG equals open_rgb's PIL pixels; a rotated or CMYK one comes through PIL's
    route (turned / converted), as before."""
    for name, data in {"plain": _jpeg(), "gray": _jpeg("L"), "turned": _jpeg(orientation=6),
                       "cmyk": _jpeg("CMYK")}.items():
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(data)
        tensor = load_rgb(path)
        pil = np.asarray(open_rgb(path))
        got = tensor.permute(1, 2, 0).numpy() if isinstance(tensor, torch.Tensor) else np.asarray(tensor)
        assert got.shape == pil.shape, name
        assert np.array_equal(got, pil), name
    assert isinstance(load_rgb(tmp_path / "plain.jpg"), torch.Tensor)
    assert not isinstance(load_rgb(tmp_path / "turned.jpg"), torch.Tensor)
