"""`perceptions map --html` opened in a real headless Chromium (tests/browser_helpers.py): the map draws with no
network, the study switch changes the colours, a popup opens; insufficient cells are greyed. Skipped, loudly,
where chromium/chromium-driver are not installed."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

from browser_helpers import MISSING, chromium, fills, find_browser, open_map
from perceptions.cli import main

if find_browser() is None:
    warnings.warn(MISSING, stacklevel=1)
    pytest.skip(MISSING, allow_module_level=True)

STUDIES = ("safe", "lively", "beautiful", "wealthy", "boring", "depressing")


@pytest.fixture()
def predictions(tmp_path):
    """12 made-up predictions in Lyon whose safe and lively scores run in opposite directions."""
    n = 12
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"path": [f"img_{i}.jpg" for i in range(n)], "lat": 45.76 + rng.uniform(0, 0.004, n),
                       "lon": 4.84 + rng.uniform(0, 0.004, n), "location_id": "", "city": "Lyon"})
    order = np.linspace(1, 10, n)
    for s in STUDIES:
        df[f"{s}_score"] = order if s == "safe" else order[::-1] if s == "lively" else rng.uniform(1, 10, n)
    for s in STUDIES:
        df[f"{s}_decile"] = np.clip(np.ceil(df[f"{s}_score"]).astype(int), 1, 10)
    path = tmp_path / "pred.csv"
    df.to_csv(path, index=False)
    return path


def test_points_draw_switch_study_and_open_a_popup(predictions, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    html = tmp_path / "map.html"
    assert main(["map", str(predictions), "--html", str(html)]) == 0
    text = html.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=", text)  # nothing loaded from elsewhere
    with chromium() as driver:
        open_map(driver, html)
        assert driver.execute_script("return window.perceptionsMap.count") == 12
        before = fills(driver)
        assert len(before) == 12 and len(set(before)) > 6  # drawn, without tiles, in many colours
        Select(driver.find_element(By.ID, "pp-study")).select_by_value("lively")
        after = fills(driver)
        assert after != before and after == before[::-1]  # lively runs opposite to safe here
        assert "lively" in driver.find_element(By.ID, "pp-legend").text
        driver.find_elements(By.CSS_SELECTOR, "path.leaflet-interactive")[3].click()
        popup = WebDriverWait(driver, 10).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, ".leaflet-popup-content"))[0]
        content = popup.get_attribute("textContent")  # all of it, also what autopan has not yet scrolled in
        assert "img_3.jpg" in content and all(s in content for s in STUDIES)
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert all("tile.openstreetmap.org" in m for m in errors), errors  # only tiles fail (no network)


def test_hexagons_grey_out_insufficient_cells(predictions, tmp_path):
    agg, html = tmp_path / "hex.geojson", tmp_path / "hex.html"
    assert main(["aggregate", str(predictions), "--h3", "10", "--min-n", "3", "--out", str(agg)]) == 0
    assert main(["map", str(agg), "--html", str(html), "--study", "lively"]) == 0
    cells = pd.DataFrame(__import__("json").loads(agg.read_text())["features"])["properties"].apply(pd.Series)
    with chromium() as driver:
        open_map(driver, html)
        drawn = fills(driver)
        assert len(drawn) == len(cells)
        grey = [f for f, ok in zip(drawn, cells["sufficient"]) if not ok]
        assert all(f == "#c8c8c8" for f in grey)
        assert all(f != "#c8c8c8" for f, ok in zip(drawn, cells["sufficient"]) if ok)
