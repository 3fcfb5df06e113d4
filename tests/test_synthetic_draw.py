"""Drawing a synthetic city on several processes gives the same files as drawing it on one."""
from __future__ import annotations

from perceptions.data.synthetic import ATTRIBUTES, JPEG_QUALITY, image_name, sample_places
from perceptions.data.synthetic_draw import draw_images, scene_rows


def test_parallel_drawing_is_byte_identical_to_one_process(tmp_path, monkeypatch):
    import perceptions.data.synthetic_draw as draw

    monkeypatch.setattr(draw, "CHUNK", 3)  # several chunks over two processes, finished out of order
    places = sample_places(10, 2, seed=4)
    rows = scene_rows(places, ATTRIBUTES, image_name)
    draw_images(rows, tmp_path / "one", seed=4, quality=JPEG_QUALITY, workers=1, progress=False)
    draw_images(rows, tmp_path / "two", seed=4, quality=JPEG_QUALITY, workers=2, progress=False)
    one = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert one == sorted(image_name(r) for r in places.itertuples(index=False)) and len(one) == 10
    for name in one:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
