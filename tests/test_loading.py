"""The fast loading path: JPEGs decoded by torchvision straight into uint8 tensors (`load_rgb`), resized and
cropped as uint8, stacked into shared memory by the decoding worker and normalised a batch at a time by the one
inference path. Checked against pipelines written out here with plain PIL and torchvision: the same pixels, the
same predictions up to float rounding, and training batches (augmentation included) unchanged."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from perceptions.data.images import (CropTooLarge, ImageError, Preprocess, augmented_transform, eval_transform,
                                     load_rgb, open_rgb, train_transform)
from predict_helpers import build_tiny_package, street_picture


@pytest.fixture(autouse=True)
def one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def pil_pixels(path, min_side: int | None = None) -> torch.Tensor:
    """The file as plain PIL sees it, upright, (3, H, W) uint8: the reference decoder. min_side: a JPEG at
    least twice that on its shorter side is decoded at libjpeg's reduced scale (as predict does, on purpose)."""
    from PIL import ImageOps

    with Image.open(path) as img:
        if min_side and img.format == "JPEG" and min(img.size) >= 2 * min_side:
            img.draft(img.mode if img.mode in ("L", "CMYK") else "RGB", (min_side, min_side))
        return torch.from_numpy(np.array(ImageOps.exif_transpose(img).convert("RGB"))).permute(2, 0, 1)


@pytest.fixture(scope="module")
def odd_files(tmp_path_factory):
    """One file per route through load_rgb: {name: (path, whether the fast tensor path takes it)}."""
    folder = tmp_path_factory.mktemp("odd")
    base = street_picture(3, (160, 120))
    files = {}

    def save(name, image, fast, **kw):
        image.save(folder / name, **kw)
        files[name] = (folder / name, fast)
    save("plain.jpg", base, True, quality=90)
    save("progressive_444.jpg", base, True, quality=95, progressive=True, subsampling=0)
    save("gray.jpg", base.convert("L"), True, quality=90)
    save("cmyk.jpg", base.convert("CMYK"), False, quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # turned by the EXIF orientation: open_rgb does it
    save("turned.jpg", base, False, quality=90, exif=exif)
    save("big.jpg", street_picture(4, (640, 480)), False, quality=90)  # reduced-scale decoding for min_side 64
    save("photo.png", base, False)
    (folder / "jpeg_named.png").write_bytes((folder / "plain.jpg").read_bytes())  # content, not the name, counts
    files["jpeg_named.png"] = (folder / "jpeg_named.png", True)
    return files


def test_load_rgb_gives_plain_pil_pixels_on_every_route(odd_files):
    for name, (path, fast) in odd_files.items():
        loaded = load_rgb(path, min_side=64)
        assert torch.is_tensor(loaded) == fast, name  # the tensor fast path, or open_rgb's PIL image
        as_tensor = loaded if fast else v2.functional.pil_to_tensor(loaded)
        assert torch.equal(as_tensor, pil_pixels(path, min_side=64)), name
        if fast:  # in (H, W, 3) memory, what the resize kernels read
            assert loaded.permute(1, 2, 0).is_contiguous()


@pytest.mark.parametrize("case", ["truncated", "text", "missing", "empty"])
def test_load_rgb_errors_read_as_open_rgb_s(tmp_path, case):
    path = tmp_path / f"bad_{case}.jpg"
    if case == "truncated":
        street_picture(1, (64, 64)).save(tmp_path / "good.jpg")
        path.write_bytes((tmp_path / "good.jpg").read_bytes()[:700])
    elif case == "text":
        path.write_text("\xff not a photograph\n")
    elif case == "empty":
        path.write_bytes(b"")
    with pytest.raises(ImageError) as loaded:
        load_rgb(path)
    with pytest.raises(ImageError) as opened:
        open_rgb(path)
    assert str(loaded.value) == str(opened.value) and str(path) in str(loaded.value)


def test_bottom_crop_of_a_decoded_tensor_is_the_pil_crop(odd_files):
    path = odd_files["plain.jpg"][0]
    pre = Preprocess(input_size=48, crop_pct=1.0, crop_bottom=20)
    for transform in (eval_transform(pre, normalize=False), eval_transform(pre)):
        assert torch.equal(transform(load_rgb(path, min_side=pre.decode_side)), transform(open_rgb(path)))
    with pytest.raises(CropTooLarge, match="120 px high"):
        eval_transform(Preprocess(input_size=48, crop_bottom=120))(load_rgb(path))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from perceptions.predict.model import load_model

    return load_model(build_tiny_package(tmp_path_factory.mktemp("pkg") / "model"))


def reference_scores(model, paths, resample_floats: bool) -> np.ndarray:
    """Predictions by a per-image pipeline written out here: PIL decode, antialiased resize of the shorter side
    and centre crop, normalise, one image at a time through the net in fp32. resample_floats: resize float
    pixels in 0..1 (no rounding anywhere); else resize the uint8 pixels and only then go to floats."""
    pre = model.preprocess
    resize = v2.Resize(pre.resize_size, interpolation=v2.InterpolationMode(pre.interpolation), antialias=True)
    mean, std = torch.tensor(pre.mean).view(3, 1, 1), torch.tensor(pre.std).view(3, 1, 1)
    rows = []
    with torch.inference_mode():
        for path in paths:
            pixels = pil_pixels(path, pre.decode_side)
            if resample_floats:
                crop = v2.functional.center_crop(resize(pixels.float() / 255), [pre.input_size])
            else:
                crop = v2.functional.center_crop(resize(pixels), [pre.input_size]).float() / 255
            x = ((crop - mean) / std)[None].contiguous(memory_format=torch.channels_last)
            rows.append(model.net.head(model.net.features(x).float())[0].double().numpy())
    return np.round(np.clip(np.stack(rows), 1, 10), 4)


def test_predictions_equal_the_per_image_pipelines(model, odd_files, tmp_path):
    from perceptions.predict.pipeline import predict_paths

    paths = [str(p) for p, _ in odd_files.values()] + [str(tmp_path / "p.jpg")]
    street_picture(9, (200, 150)).save(paths[-1], quality=85)
    columns = [f"{s}_score" for s in model.studies]
    uint8_resize = reference_scores(model, paths, resample_floats=False)
    float_resize = reference_scores(model, paths, resample_floats=True)
    for workers in (0, 1):
        df, skipped = predict_paths(model, paths, batch_size=4, num_workers=workers, progress=False,
                                    precision="fp32")
        assert skipped.empty and list(df["path"]) == paths
        got = df[columns].to_numpy()
        # Batched normalisation, channels_last batches: float rounding only (scores are rounded to 1e-4).
        assert np.abs(got - uint8_resize).max() <= 2e-4
        # Resampling floats instead of uint8 pixels moves each pixel by up to ~1/255 (and keeps bicubic's
        # overshoot past 0..1): a few hundredths at most on the 1..10 scale, where images differ by whole points.
        assert np.abs(got - float_resize).max() < 0.1 and np.abs(got - float_resize).mean() < 0.02


def test_loader_batches_equal_the_pil_route_exactly(model, odd_files):
    """The uint8 crops predict's loader stacks are, pixel for pixel, what PIL decoding + the uint8 eval transform
    gave before the fast path (open_rgb for every file); with a worker, batches come through the shared ring of
    buffers, here round it more than once (8 batches, 6 slots), and still arrive intact and in order; without
    one, decoded on one thread or on three at once (ThreadedItems), in order too."""
    from perceptions.predict.pipeline import CropLoader, ImageItems, ThreadedItems

    paths = [str(p) for p, _ in odd_files.values()] * 2
    pre = model.preprocess
    expected = torch.stack([model.crop_transform(open_rgb(p, min_side=pre.decode_side)) for p in paths])
    for workers, threads in ((0, 1), (0, 3), (1, None)):
        loader = CropLoader(ImageItems(paths, model.crop_transform, pre.decode_side), 2, workers, pre.input_size,
                            threads=threads)
        assert (loader.ring is not None) == (workers > 0) and (workers == 0 or len(loader.ring.buffers) == 6)
        assert isinstance(loader.loader, ThreadedItems) == (threads == 3)
        got, indices = [], []
        for index, batch, failed in loader:
            assert batch.dtype == torch.uint8 and batch.is_contiguous(memory_format=torch.channels_last)
            assert not failed
            got.append(batch.clone())
            indices += index
        assert indices == list(range(len(paths))) and torch.equal(torch.cat(got), expected)
    # Batches for a GPU are pinned by the DataLoader, so they do not take the threaded route.
    pinned = CropLoader(ImageItems(paths, model.crop_transform, pre.decode_side), 2, 0, pre.input_size,
                        pin_memory=True, threads=3)
    assert not isinstance(pinned.loader, ThreadedItems)


def test_ring_takes_views_and_failures(model, tmp_path):
    """Panorama views (more crops than a ring slot holds: a fresh buffer) and unreadable files next to images."""
    from perceptions.places.panoramas import PanoramaViews
    from perceptions.predict.pipeline import CropLoader, ImageItems, collate_views

    pano = np.zeros((256, 512, 3), dtype=np.uint8)
    pano[:, :, 0] = np.arange(512) // 2
    Image.fromarray(pano).save(tmp_path / "pano.jpg", quality=90)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    paths = []
    for k in range(5):
        street_picture(k, (96, 72)).save(tmp_path / f"{k}.jpg", quality=90)
        paths += [str(tmp_path / f"{k}.jpg"), str(tmp_path / ("pano.jpg" if k % 2 else "broken.jpg"))]
    pre = model.preprocess
    runs = []
    for workers, threads in ((0, 1), (1, None), (0, 3)):
        views = PanoramaViews("auto")
        items = ImageItems(paths, model.crop_transform, pre.decode_side, views, model.crop_transform, pre.resize_size)
        runs.append([(index, batch.clone(), failed, keys) for index, batch, failed, keys
                     in CropLoader(items, 2, workers, pre.input_size, collate_views, threads=threads)])
    assert len(runs[0]) == len(runs[1]) == len(runs[2]) == 5
    for run in runs[1:]:
        for (i0, b0, f0, k0), (i1, b1, f1, k1) in zip(runs[0], run):
            assert i0 == i1 and f0 == f1 and k0 == k1 and torch.equal(b0, b1)
    assert sum(len(k) for _, _, _, k in runs[0]) == 5 + 2 * 4 and sum(len(f) for _, _, f, _ in runs[0]) == 3


@pytest.mark.parametrize("augment", ["crop", "flip", "none"])
def test_training_batches_are_unchanged_augmentation_included(odd_files, augment):
    """ImageBatches seeds every image's augmentation by its position; the tensor route must draw the same crops
    and flips and give the same pixels as the transform applied to open_rgb's PIL images."""
    from perceptions.data.datasets import ImageScores
    from perceptions.train.batches import ImageBatches, mix_seed

    paths = [str(p) for p, _ in odd_files.values()]
    pre = Preprocess(input_size=40, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    targets = np.arange(len(paths) * 2, dtype=np.float32).reshape(len(paths), 2)
    transform = augmented_transform(pre, augment)
    images = ImageScores(paths, targets, transform, pre.input_size, pre.decode_side)
    order = np.array([3, 0, 5, 1, 7, 2, 6, 4])
    source = ImageBatches(images, lambda epoch: order, batch_size=4, seed=11)
    batches = list(source.batches(epoch=2))
    assert [len(b[0]) for b in batches] == [4, 4]
    got = torch.cat([b[0] for b in batches])
    expected = []
    for pos, row in enumerate(order):
        torch.manual_seed(mix_seed(11, 2, pos))
        expected.append(transform(open_rgb(paths[row], min_side=pre.decode_side)))
    assert torch.equal(got, torch.stack(expected))
    assert torch.equal(torch.cat([b[1] for b in batches]), torch.from_numpy(targets[order]))
    if augment != "none":
        plain = torch.stack([eval_transform(pre)(open_rgb(paths[row], min_side=pre.decode_side)) for row in order])
        assert not torch.equal(got, plain)  # the augmentation did something


def test_train_transform_on_a_tensor_draws_like_on_pil(odd_files):
    path = odd_files["plain.jpg"][0]
    transform = train_transform(Preprocess(input_size=32))
    for seed in range(4):
        torch.manual_seed(seed)
        from_tensor = transform(load_rgb(path))
        torch.manual_seed(seed)
        assert torch.equal(from_tensor, transform(open_rgb(path)))


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "nearest"])
def test_resize_crop_gives_torchvision_s_numbers(interpolation):
    """ResizeCrop skips v2's dispatch; it must give v2.Resize + v2.CenterCrop's output exactly, for every shape
    (landscape, portrait, square, exact size, smaller than the crop), uint8 and float, any memory layout."""
    from perceptions.data.images import ResizeCrop

    generator = torch.Generator().manual_seed(0)
    for size, crop in ((256, 224), (73, 64), (40, 48)):
        ours = ResizeCrop(size, crop, interpolation)
        reference = v2.Compose([v2.Resize(size, interpolation=v2.InterpolationMode(interpolation), antialias=True),
                                v2.CenterCrop(crop)])
        for h, w in ((300, 400), (400, 300), (257, 257), (size, size + 1), (31, 45)):
            hwc = torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=generator)
            for image in (hwc.permute(2, 0, 1), hwc.permute(2, 0, 1).contiguous(), hwc.permute(2, 0, 1).float() / 255):
                out = ours(image)
                assert out.shape == (3, crop, crop)
                assert torch.equal(out, reference(image)), (size, crop, h, w, image.dtype)
