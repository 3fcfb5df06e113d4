"""Regenerate docs/images/html_map.png, the README's picture of `perceptions map --html`, the way a newcomer
gets it: a synthetic city's photos copied under plain names, a CSV of their coordinates, `predict` with the
shipped model, `aggregate --h3 8`, `map --html`, and a screenshot in headless Chromium (tests/browser_helpers.py,
no network, so no tiles: the map as it looks offline).

    .venv/bin/python docs/make_html_map_screenshot.py        # ~1 minute on 2 CPU cores
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def perceptions(*args) -> None:
    subprocess.run([sys.executable, "-m", "perceptions", *map(str, args), "--no-progress"]
                   if args[0] in ("synth", "predict") else [sys.executable, "-m", "perceptions", *map(str, args)],
                   check=True, cwd=ROOT)


def main(png: Path = ROOT / "docs" / "images" / "html_map.png") -> Path:
    from browser_helpers import screenshot

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        perceptions("synth", "--out", tmp / "city", "--images", 600, "--cities", 1, "--votes-per-image", 1)
        truth = pd.read_csv(tmp / "city" / "truth.csv", dtype={"location_id": str})
        photos = tmp / "photos"
        photos.mkdir()
        rows = []
        for i, image in enumerate(sorted((tmp / "city" / "images").iterdir())):
            location_id = image.name.split("_")[2]
            shutil.copy(image, photos / f"photo_{i:04d}.jpg")
            place = truth.loc[truth["location_id"] == location_id].iloc[0]
            rows.append({"filename": f"photo_{i:04d}.jpg", "latitude": place["lat"], "longitude": place["lon"],
                         "neighbourhood": place["neighbourhood"]})
        pd.DataFrame(rows).to_csv(photos / "photos.csv", index=False)
        perceptions("predict", photos / "photos.csv", "--out", tmp / "predictions.csv")
        perceptions("aggregate", tmp / "predictions.csv", "--h3", 8, "--out", tmp / "hexagons.gpkg")
        perceptions("map", tmp / "hexagons.gpkg", "--html", tmp / "map.html", "--study", "safe")
        screenshot(tmp / "map.html", png, width=900, height=600)
    print(f"wrote {png}")
    return png


if __name__ == "__main__":
    main()
