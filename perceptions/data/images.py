"""Robust image reading and the train/eval transform presets (side by side, as in torchvision's references).

`open_rgb` turns whatever a user's folder holds (EXIF-rotated phone photos, PNGs with alpha, 16-bit or CMYK
files, 100-megapixel panoramas) into a plain 8-bit RGB PIL image, or raises `ImageError` naming the file;
`load_rgb`, for data loaders, gives the same pixels, a plain JPEG straight as a uint8 tensor.
`Preprocess` is the preprocessing that belongs to a backbone's weights; it travels inside the model package.
"""
from __future__ import annotations

import math
import stat
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from perceptions.data.jpeg import decode_jpeg, draft_target, plain_jpeg
from perceptions.errors import DataError, PerceptionsError

# Above this many pixels an image is refused as a likely decompression bomb (PIL's own hard limit is ~179 MP).
MAX_PIXELS = 180_000_000
# Transparent pixels become white: what a viewer shows, so what a person rating the image would have seen.
BACKGROUND = (255, 255, 255)
# What open_rgb leaves in the image's `info`: the file it came from and its full upright size before any
# reduced-scale decoding, so that a crop given in the file's own pixels (Preprocess.crop_bottom) removes the same
# strip at any decoding scale; CROPPED marks an image already cropped (the crop is applied once).
SOURCE, FULL_SIZE, CROPPED = "perceptions.source", "perceptions.full_size", "perceptions.cropped"
# Place Pulse's 400x300 Street View images carry the Google logo and "(c) Google" in their bottom rows: measured
# on the real images in tests/fixtures/placepulse, the logo's glyphs span rows 274..295 (of 0..299) and the
# copyright text rows 289..298; 28 rows (272..299) removes the strip and the JPEG block row it starts in.
PLACEPULSE_LOGO_ROWS = 28

_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")


class ImageError(DataError):
    """An image that cannot be read: the message names the file (and `.path` holds it)."""


class CropTooLarge(ImageError):
    """An image no taller than the strip `Preprocess.crop_bottom` would cut off its bottom."""


def open_rgb(path, max_pixels: int = MAX_PIXELS, min_side: int | None = None) -> Image.Image:
    """Read `path` as an upright 8-bit RGB image. min_side: the shortest side the caller needs; a JPEG much larger
    than that is decoded at a reduced scale (JPEG DCT scaling, `Image.draft`), which keeps both sides >= min_side.
    None: only reduce very large JPEGs."""
    return _read(path, max_pixels, min_side, as_tensor=False)


def load_rgb(path, max_pixels: int = MAX_PIXELS, min_side: int | None = None):
    """open_rgb for data loaders: the same pixels, but a JPEG decoded at full scale (no reduction, no EXIF turn,
    RGB or gray) comes back as a uint8 (3, H, W) tensor, decoded by torchvision's libjpeg-turbo straight into the
    (H, W, 3) memory the resize kernels read: no PIL image, no copy out of PIL's 4-bytes-a-pixel storage (a third
    of a 400x300 photo's decoding time). Other files come as open_rgb's PIL image; the transforms take either."""
    return _read(path, max_pixels, min_side, as_tensor=True)


def _read(path, max_pixels: int, min_side: int | None, as_tensor: bool):
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ImageError(path, "no such file") from None
    except OSError as e:  # permission denied, symlink loop, name too long...
        raise ImageError(path, f"cannot read ({e.strerror or e})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageError(path, "is a folder, not an image")
    if info.st_size == 0:
        raise ImageError(path, "empty file (0 bytes)")
    if as_tensor and (pixels := plain_jpeg(path, max_pixels, min_side)) is not None:
        return pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the max_pixels check below says it
            with Image.open(path) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageError(path, f"{width}x{height} pixels is more than the limit of {max_pixels:,} "
                                           "(refused as a possible decompression bomb)")
                target = draft_target(img.size, min_side) if img.format == "JPEG" else None
                if as_tensor and img.format == "JPEG" and target is None and img.mode in ("RGB", "L") and \
                        _orientation(img) in (1, None):
                    img.fp.seek(0)
                    if (pixels := decode_jpeg(img.fp.read())) is not None:
                        return pixels
                if target is not None:  # CMYK and gray JPEGs keep their own mode; only the scale is requested
                    img.draft(img.mode if img.mode in ("L", "CMYK") else "RGB", target)
                img.load()
                rgb = _to_rgb(_upright(img))
                rgb.info[SOURCE] = str(path)
                # The size before any reduced decoding, turned as the EXIF orientation turned the pixels.
                rgb.info[FULL_SIZE] = (width, height) if rgb.size == img.size else (height, width)
                return rgb
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(path, f"refused as a possible decompression bomb ({e})") from None
    except UnidentifiedImageError:
        raise ImageError(path, "not an image (or a format PIL cannot read)") from None
    except PermissionError:
        raise ImageError(path, "permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # PIL reports a cut-off file as OSError("image file is truncated ...") and broken headers variously.
        raise ImageError(path, f"truncated or corrupt image ({e})") from None


def _orientation(img: Image.Image):
    """The EXIF orientation (1 or None: as stored; -1: the EXIF block cannot be read)."""
    try:
        return img.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # noqa: BLE001 - damaged EXIF blocks are common in the wild
        return -1


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a damaged EXIF block (common in the wild) leaves the pixels as stored."""
    try:  # exif_transpose copies the whole image when there is nothing to turn (most files): not called then
        return img if _orientation(img) in (1, None, -1) else ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - the pixels are fine even when the metadata is not
        return img


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(img)), mode="L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, BACKGROUND)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """16-bit (or int/float) gray levels -> 0..255, keeping the file's own scale where it is evident."""
    if values.dtype == np.uint16 or (values.dtype.kind in "iu" and values.max(initial=0) > 255):
        top = 65535.0 if values.max(initial=0) <= 65535 else float(values.max())
        return np.clip(np.rint(values.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
    if values.dtype.kind == "f" and values.max(initial=0) <= 1.0:
        return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Preprocess:
    """How images must be prepared for one backbone's weights (resolved from the weights, stored with a model).

    crop_bottom: rows cut off the bottom of every image before the resize (`train --crop-bottom`: the logo
    strip of Place Pulse's Street View images); the model package keeps it, so predict crops the same way."""

    input_size: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    crop_bottom: int = 0  # rows cut off the bottom of every image first, in the file's own pixels (a logo strip)

    def __post_init__(self):
        if not (isinstance(self.input_size, int) and self.input_size > 0):
            raise PerceptionsError(f"preprocess: input_size must be a positive integer, got {self.input_size!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(value) != 3 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in value):
                raise PerceptionsError(f"preprocess: {name} must be three finite numbers, got {value!r}")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        if any(s <= 0 for s in self.std):
            raise PerceptionsError(f"preprocess: std must be positive, got {self.std!r}")
        if self.interpolation not in _INTERPOLATIONS:
            raise PerceptionsError(f"preprocess: interpolation must be one of {', '.join(_INTERPOLATIONS)}, "
                                   f"got {self.interpolation!r}")
        if not (isinstance(self.crop_pct, (int, float)) and 0 < self.crop_pct <= 1):
            raise PerceptionsError(f"preprocess: crop_pct must be in (0, 1], got {self.crop_pct!r}")
        object.__setattr__(self, "crop_pct", float(self.crop_pct))
        if isinstance(self.crop_bottom, bool) or not (isinstance(self.crop_bottom, int) and self.crop_bottom >= 0):
            raise PerceptionsError(f"preprocess: crop_bottom must be a whole number of pixels >= 0, "
                                   f"got {self.crop_bottom!r}")

    @property
    def resize_size(self) -> int:
        """Shorter side before the centre crop (timm's rule: floor(input_size / crop_pct))."""
        return math.floor(self.input_size / self.crop_pct)

    @property
    def decode_side(self) -> int:
        """The shortest side to decode an image at (`open_rgb(min_side=...)`): the resize's shorter side, plus
        the bottom strip that is cut off first, so a reduced-scale decode still has enough rows after the crop."""
        return self.resize_size + self.crop_bottom

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        if not isinstance(d, dict):
            raise PerceptionsError(f"preprocess: expected a dict, got {type(d).__name__}")
        known = {"input_size", "mean", "std", "interpolation", "crop_pct"}
        missing = known - set(d)
        if missing:
            raise PerceptionsError(f"preprocess: missing {', '.join(sorted(missing))}")
        optional = {"crop_bottom"} & set(d)  # packages made before it existed crop nothing
        try:
            return cls(**{k: (tuple(d[k]) if k in ("mean", "std") else d[k]) for k in known | optional})
        except TypeError as e:
            raise PerceptionsError(f"preprocess: {e}") from None


class CropBottom:
    """PIL image (or load_rgb's tensor) -> the image without its bottom `pixels` rows (see `crop_bottom`)."""

    def __init__(self, pixels: int):
        self.pixels = int(pixels)

    def __call__(self, img):
        return crop_bottom(img, self.pixels)

    def __repr__(self):
        return f"{type(self).__name__}({self.pixels})"


def crop_bottom(img, pixels: int):
    """Cut `pixels` rows, counted in the file's own pixels, off the bottom of an `open_rgb` image: a JPEG decoded
    at a reduced scale loses proportionally fewer rows (rounded up, so no row of the strip is left). Applied once:
    an image already cropped comes back as it is. A (3, H, W) tensor (`load_rgb` makes one only of a file decoded
    at full scale) loses exactly `pixels` rows. Raises CropTooLarge when nothing would be left."""
    pil = isinstance(img, Image.Image)
    if pixels <= 0 or (pil and img.info.get(CROPPED)):
        return img
    full_width, full_height = (img.info.get(FULL_SIZE) or img.size) if pil else tuple(img.shape[:-3:-1])
    if pixels >= full_height:
        raise CropTooLarge(img.info.get(SOURCE, "image") if pil else "image", f"{full_height} px high, not more "
                           f"than the {pixels} px that --crop-bottom cuts off its bottom")
    if not pil:
        return img[..., :full_height - pixels, :]
    rows = min(img.height - 1, math.ceil(pixels * img.height / full_height - 1e-9))
    out = img.crop((0, 0, img.width, img.height - rows))
    out.info[FULL_SIZE], out.info[CROPPED] = (full_width, full_height - pixels), True
    return out


class NormalizeUint8:
    """uint8 (C, H, W) -> float32 (x / 255 - mean) / std, faster than ToDtype + Normalize. Also takes a
    channels_last batch (B, C, H, W), as predict's loader stacks it, on any device."""

    def __init__(self, mean, std):
        import torch

        std_t = torch.tensor(std, dtype=torch.float32)
        self.scale = (1.0 / (255.0 * std_t)).view(-1, 1, 1)
        self.shift = (torch.tensor(mean, dtype=torch.float32) / std_t).view(-1, 1, 1)
        self._patterns = {}  # (H, W, device) of the last batch shape -> (scale, shift) over (H, W, C)

    def __call__(self, image):
        import torch

        if image.ndim == 4 and image.permute(0, 2, 3, 1).is_contiguous():
            return self._channels_last_batch(image)
        # PILToTensor yields a channels-last view; the broadcast ops run faster on a contiguous copy.
        pixels = image.as_subclass(torch.Tensor).to(torch.float32).contiguous()
        return pixels.mul_(self.scale.to(pixels.device)).sub_(self.shift.to(pixels.device))

    def _channels_last_batch(self, batch):
        """On (B, H, W, C) memory a per-channel factor repeats every 3 values, which the vectorised kernels do
        not handle well; a full (H, W, C) pattern of factors makes both ops plain contiguous sweeps (faster
        here than broadcasting)."""
        import torch

        pixels = batch.as_subclass(torch.Tensor).permute(0, 2, 3, 1).to(torch.float32)
        h, w = pixels.shape[1:3]
        key = (h, w, pixels.device)
        if key not in self._patterns:  # one shape kept: a run's batches share it
            self._patterns = {key: tuple(t.view(-1).to(pixels.device).repeat(h * w).view(h, w, -1)
                                         for t in (self.scale, self.shift))}
        scale, shift = self._patterns[key]
        return pixels.mul_(scale).sub_(shift).permute(0, 3, 1, 2)

    def __repr__(self):
        return f"{type(self).__name__}()"


def to_tensor(image):
    """PIL image -> (3, H, W) uint8 tensor (v2.PILToTensor's); a tensor (from `load_rgb`) as it is."""
    from torchvision.transforms.v2 import functional as TF

    return TF.pil_to_tensor(image) if isinstance(image, Image.Image) else image


class ResizeCrop:
    """(3, H, W) tensor -> shorter side to `size` (antialiased), centre `crop` x `crop`: v2.Resize(size) +
    v2.CenterCrop(crop)'s numbers without v2's per-call dispatch (a sixth of a 400x300 JPEG's loading time). What
    torch resizes natively on a CPU (uint8 bicubic, floats) goes straight to its kernel, the rest via torchvision."""

    def __init__(self, size: int, crop: int, interpolation: str):
        self.size, self.crop, self.interpolation = size, crop, interpolation

    def __call__(self, image):
        import torch
        from torchvision.transforms.v2 import functional as TF

        native = image.ndim == 3 and image.device.type == "cpu" and self.size >= self.crop and (
            image.dtype == torch.uint8 and self.interpolation == "bicubic"
            or image.dtype in (torch.float32, torch.float64) and self.interpolation in ("bilinear", "bicubic"))
        if not native:
            mode = TF.InterpolationMode(self.interpolation)
            return TF.center_crop_image(TF.resize_image(image, [self.size], mode, antialias=True), [self.crop])
        c, h, w = image.shape
        new_long = int(self.size * max(h, w) / min(h, w))  # torchvision's rule, ties included
        new_h, new_w = (new_long, self.size) if w <= h else (self.size, new_long)
        if (new_h, new_w) != (h, w):
            nchw = image.as_subclass(torch.Tensor).unsqueeze(0)
            if image.permute(1, 2, 0).is_contiguous():  # (H, W, C) memory: so is the output
                nchw = nchw.as_strided((1, c, h, w), (c * h * w, *image.stride()))
            image = torch.nn.functional.interpolate(nchw, size=(new_h, new_w), mode=self.interpolation,
                                                    align_corners=False, antialias=True)[0]
        top, left = int(round((new_h - self.crop) / 2.0)), int(round((new_w - self.crop) / 2.0))
        return image[:, top:top + self.crop, left:left + self.crop]

    def __repr__(self):
        return f"{type(self).__name__}({self.size}, crop={self.crop}, {self.interpolation})"


def eval_transform(pre: Preprocess, normalize: bool = True):
    """PIL RGB, or a (3, H, W) uint8 tensor from `load_rgb` -> normalised float tensor (3, S, S): shorter side to
    input_size/crop_pct, centre crop, on uint8 (torch's antialiased kernels are several times faster than PIL's
    here), floats only at the net's input size. normalize=False stops at the uint8 crop, for a loader that
    normalises whole batches (`NormalizeUint8`)."""
    from torchvision.transforms import v2

    return v2.Compose([
        *([CropBottom(pre.crop_bottom)] if pre.crop_bottom else []),  # no step at all for 0
        to_tensor,
        ResizeCrop(pre.resize_size, pre.input_size, pre.interpolation),
        *([NormalizeUint8(pre.mean, pre.std)] if normalize else []),
    ])


def train_transform(pre: Preprocess):
    """Mild geometric augmentation only: colour carries perception here, so no colour jitter."""
    from torchvision.transforms import v2

    return v2.Compose([
        *([CropBottom(pre.crop_bottom)] if pre.crop_bottom else []),  # no step at all for 0
        to_tensor,
        v2.RandomResizedCrop(pre.input_size, scale=(0.6, 1.0), interpolation=v2.InterpolationMode(pre.interpolation),
                             antialias=True),
        v2.RandomHorizontalFlip(),
        NormalizeUint8(pre.mean, pre.std),
    ])


AUGMENTATIONS = ("crop", "flip", "none")  # what `train --augment` accepts


def augmented_transform(pre: Preprocess, augment: str):
    """The fine-tuning transform: the train preset (random resized crop + flip), or the eval transform after a
    random flip (street scenes are left-right symmetric), or the eval transform alone."""
    from torchvision.transforms import v2

    if augment == "crop":
        return train_transform(pre)
    if augment == "flip":
        return v2.Compose([v2.RandomHorizontalFlip(), eval_transform(pre)])
    return eval_transform(pre)


