"""Robust image reading (every odd file a user's folder may hold) and the transform presets."""
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from perceptions.data.images import (ImageError, NormalizeUint8, Preprocess, eval_transform, open_rgb,
                                     train_transform)
from perceptions.errors import PerceptionsError

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def two_halves(size=(40, 20), left=RED, right=BLUE):
    img = Image.new("RGB", size, left)
    img.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return img


def close(pixel, colour, tol=30):
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(pixel, colour))


def test_plain_rgb_jpeg(tmp_path):
    path = tmp_path / "Plaza Mayor, Señora São Paulo.JPG"
    two_halves().save(path, quality=95)
    img = open_rgb(path)
    assert img.mode == "RGB" and img.size == (40, 20)
    assert close(img.getpixel((5, 10)), RED) and close(img.getpixel((35, 10)), BLUE)


def test_grayscale_jpeg(tmp_path):
    path = tmp_path / "gray.jpg"
    Image.new("L", (30, 20), 100).save(path)
    img = open_rgb(path)
    assert img.mode == "RGB" and img.size == (30, 20)
    r, g, b = img.getpixel((10, 10))
    assert r == g == b and abs(r - 100) <= 2


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    two_halves().convert("CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    img = open_rgb(path)
    assert img.mode == "RGB"
    assert close(img.getpixel((5, 10)), RED) and close(img.getpixel((35, 10)), BLUE)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_is_flattened_on_white(tmp_path, mode):
    rgba = Image.new("RGBA", (40, 20), (0, 0, 0, 0))        # left half fully transparent
    rgba.paste((0, 0, 0, 255), (20, 0, 40, 20))              # right half opaque black
    path = tmp_path / f"alpha_{mode}.png"
    if mode == "P":
        pal = Image.new("P", (40, 20), 0)
        pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
        pal.paste(1, (0, 0, 20, 20))
        pal.info["transparency"] = 1                           # palette entry 1 (green) is transparent
        pal.save(path, transparency=1)
    else:
        rgba.convert(mode).save(path)
    img = open_rgb(path)
    assert img.mode == "RGB"
    assert img.getpixel((5, 10)) == WHITE
    assert img.getpixel((35, 10)) == (0, 0, 0)


def test_16_bit_png_keeps_its_gray_levels(tmp_path):
    levels = np.tile(np.array([0, 256 * 64, 65535], dtype=np.uint16), (4, 1))
    path = tmp_path / "deep.png"
    Image.fromarray(levels).save(path)
    assert Image.open(path).mode.startswith("I")
    img = np.asarray(open_rgb(path))
    assert img.shape == (4, 3, 3)
    assert list(img[0, :, 0]) == [0, 64, 255]               # not clipped to white, not all black


def test_exif_rotation_is_applied(tmp_path):
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6                                         # "rotate 90 degrees clockwise to display"
    two_halves().save(path, exif=exif, quality=95)
    img = open_rgb(path)
    assert img.size == (20, 40)
    assert close(img.getpixel((10, 5)), RED) and close(img.getpixel((10, 35)), BLUE)


def test_damaged_exif_does_not_lose_the_image(tmp_path):
    path = tmp_path / "odd_exif.jpg"
    exif = Image.Exif()
    exif[0x0112] = 99                                        # no such orientation
    two_halves().save(path, exif=exif)
    assert open_rgb(path).size == (40, 20)


@pytest.mark.parametrize("case", ["zero", "truncated", "text", "missing", "folder", "symlink_loop"])
def test_unreadable_files_raise_image_error_naming_the_file(tmp_path, case):
    path = tmp_path / f"bad_{case}.jpg"
    if case == "zero":
        path.write_bytes(b"")
    elif case == "truncated":
        good = tmp_path / "good.jpg"
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
        path.write_bytes(good.read_bytes()[:700])
    elif case == "text":
        path.write_text("this is not a photograph\n")
    elif case == "folder":
        path.mkdir()
    elif case == "symlink_loop":
        path.symlink_to(path)
    with pytest.raises(ImageError) as err:
        open_rgb(path)
    assert isinstance(err.value, PerceptionsError)
    assert str(path) in str(err.value) and err.value.path == path
    assert "\n" not in str(err.value)


def _png_header_only(path, width, height):
    """A PNG whose header claims width x height: enough for a decompression bomb check, no pixels needed."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_decompression_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.png"
    _png_header_only(path, 20_000, 10_000)                  # 200 megapixels
    with pytest.raises(ImageError, match="decompression bomb") as err:
        open_rgb(path)
    assert str(path) in str(err.value)
    small = tmp_path / "small.png"
    Image.new("RGB", (20, 20)).save(small)
    with pytest.raises(ImageError, match="limit"):
        open_rgb(small, max_pixels=100)


def test_huge_but_legal_jpeg_is_decoded_at_reduced_scale(tmp_path):
    path = tmp_path / "panorama.jpg"
    two_halves((12_000, 9_000)).save(path, quality=50)      # 108 MP: above PIL's warning threshold
    with warnings.catch_warnings():
        warnings.simplefilter("error")                        # no DecompressionBombWarning may escape
        full = open_rgb(path)
        for_net = open_rgb(path, min_side=256)
    assert max(full.size) <= 4096 and full.size[0] / full.size[1] == pytest.approx(12 / 9, rel=0.01)
    assert for_net.size == (1500, 1125)                      # 1/8: the strongest JPEG reduction, >= 256
    assert close(for_net.getpixel((5, 5)), RED) and close(for_net.getpixel((for_net.size[0] - 5, 5)), BLUE)


def test_preprocess_round_trip_and_validation():
    pre = Preprocess(input_size=240, crop_pct=0.882)
    assert Preprocess.from_dict(pre.to_dict()) == pre
    assert pre.resize_size == 272                              # floor(240 / 0.882), timm's rule
    with pytest.raises(PerceptionsError, match="interpolation"):
        Preprocess(interpolation="cubic-ish")
    with pytest.raises(PerceptionsError, match="missing"):
        Preprocess.from_dict({"input_size": 224})
    with pytest.raises(PerceptionsError, match="std"):
        Preprocess(std=(0.5, 0.0, 0.5))


def test_eval_transform_matches_the_plain_pil_pipeline(tmp_path):
    from torchvision.transforms import v2

    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
    pre = Preprocess(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    fast = eval_transform(pre)(img)
    reference = v2.Compose([v2.Resize(pre.resize_size, interpolation=v2.InterpolationMode.BICUBIC,
                                      antialias=True),
                            v2.CenterCrop(224), v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize(pre.mean, pre.std)])(img)
    assert fast.shape == (3, 224, 224) and fast.dtype == torch.float32 and fast.is_contiguous()
    assert (fast - reference).abs().mean() < 0.01             # same pipeline up to resampling rounding
    white = eval_transform(Preprocess())(Image.new("RGB", (50, 40), WHITE))
    assert torch.allclose(white, torch.ones_like(white))      # (1 - 0.5) / 0.5


def test_train_transform_is_random_but_shaped():
    pre = Preprocess(input_size=64)
    img = two_halves((160, 120))
    transform = train_transform(pre)
    torch.manual_seed(0)
    outs = [transform(img) for _ in range(6)]
    assert all(o.shape == (3, 64, 64) and o.dtype == torch.float32 for o in outs)
    assert any(not torch.equal(outs[0], o) for o in outs[1:])
    # No colour jitter: every output pixel is still (close to) red or blue, never a new colour.
    pixels = torch.cat([o.reshape(3, -1) for o in outs], dim=1)
    assert pixels[1].max() <= -0.95                        # green stays at 0 (-1 after normalising)


def test_normalising_a_channels_last_batch_equals_normalising_each_image():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    normalize = NormalizeUint8(mean, std)
    batch = torch.randint(0, 256, (5, 3, 24, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    expected = (batch.float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    per_image = torch.stack([normalize(image) for image in batch])
    for layout in (torch.contiguous_format, torch.channels_last):
        out = normalize(batch.contiguous(memory_format=layout))
        assert torch.equal(out, per_image) and torch.allclose(out, expected, atol=1e-5)
        assert out.is_contiguous(memory_format=layout)  # the layout the net runs in is kept
    smaller = normalize(batch[:, :, :12, :20].contiguous(memory_format=torch.channels_last))  # a new shape
    assert torch.equal(smaller, per_image[:, :, :12, :20])
    uint8_crop = eval_transform(Preprocess(input_size=32), normalize=False)(Image.new("RGB", (64, 48), (9, 99, 199)))
    assert uint8_crop.dtype == torch.uint8 and uint8_crop.shape == (3, 32, 32)
