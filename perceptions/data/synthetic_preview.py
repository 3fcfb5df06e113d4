"""A contact sheet of a synthetic city: scenes captioned with their true perceptions, for a person to judge."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from perceptions.data.synthetic import image_name
from perceptions.errors import PerceptionsError
from perceptions.studies import STUDY_NAMES


def write_contact_sheet(city_dir, path, n: int = 12, columns: int = 4, seed: int = 0) -> Path:
    """A grid of `n` scenes from a synthetic city, each captioned with its six true perceptions as deciles
    of the city (1 = least, 10 = most), so a person can judge whether they look right. Returns `path`."""
    from PIL import Image, ImageDraw, ImageFont

    city_dir, path = Path(city_dir), Path(path)
    truth_path = city_dir / "truth.csv"
    if not truth_path.is_file():
        raise PerceptionsError(f"{truth_path}: no such file; is {city_dir} a synthetic city?")
    truth = pd.read_csv(truth_path, dtype={"location_id": str})
    deciles = truth[list(STUDY_NAMES)].rank(pct=True).mul(10).apply(np.ceil).clip(1, 10).astype(int)
    picked = np.random.default_rng(seed).choice(len(truth), size=min(n, len(truth)), replace=False)
    picked = picked[np.argsort(truth["safe"].to_numpy()[picked])]  # least to most safe, to read along
    thumb_w, thumb_h, caption_h = 320, 240, 46
    rows = math.ceil(len(picked) / columns)
    sheet = Image.new("RGB", (columns * thumb_w, rows * (thumb_h + caption_h)), "white")
    draw = ImageDraw.Draw(sheet)
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow without FreeType: the small bitmap font
        font = ImageFont.load_default()
    for k, i in enumerate(picked):
        row = truth.iloc[i]
        x, y = (k % columns) * thumb_w, (k // columns) * (thumb_h + caption_h)
        with Image.open(city_dir / "images" / image_name(row)) as scene:
            sheet.paste(scene.convert("RGB").resize((thumb_w, thumb_h), Image.BILINEAR), (x, y))
        d = deciles.iloc[i]
        lines = [f"{row['city']}, {row['light']}",
                 "  ".join(f"{s} {d[s]}" for s in STUDY_NAMES[:3]),
                 "  ".join(f"{s} {d[s]}" for s in STUDY_NAMES[3:])]
        for j, line in enumerate(lines):
            draw.text((x + 6, y + thumb_h + 2 + 14 * j), line, fill=(20, 20, 20), font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
