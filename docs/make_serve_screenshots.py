"""Regenerate docs/images/serve_score.png, serve_vote.png and serve_map.png, the README's pictures of
`perceptions serve`: the real server on the synthetic city's images (input/synthetic/images, made by `make demo`
or `perceptions synth`) with the shipped model/, driven by headless Chromium (tests/browser_helpers.py, no
network, so the map has no tiles: the pages as they look offline) at 1200x800.

The map needs predictions: `perceptions predict` on every other image of one of the four cities (375 images),
written to a temporary folder, as are the few votes cast for the picture (never into input/).

    .venv/bin/python docs/make_serve_screenshots.py        # ~2 minutes on 2 CPU cores
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
IMAGES = ROOT / "input" / "synthetic" / "images"
CITY = "Alderbrook"
PHOTO = "52.182801_-1.287893_1f890059a320d77bb22aec51_Alderbrook.JPG"  # a busy street, scored on the Score page
WIDTH, HEIGHT = 1200, 800


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/api/health", timeout=5) as r:
                if json.loads(r.read()) == {"status": "ok"}:
                    return
        except OSError:
            time.sleep(0.5)
        if process.poll() is not None:
            break
    raise SystemExit(f"the server did not come up at {url} (exit status {process.poll()})")


def shoot(driver, png: Path) -> None:
    driver.save_screenshot(str(png))
    print(f"wrote {png}")


def pages(url: str, out: Path, photo: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from browser_helpers import chromium

    with chromium(WIDTH, HEIGHT) as driver:
        # The window size counts the (invisible) browser frame; the page itself gets exactly WIDTH x HEIGHT.
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
        wait = WebDriverWait(driver, 120)
        driver.get(url + "/score")
        Select(driver.find_element(By.ID, "explain-study")).select_by_value("lively")
        driver.find_element(By.ID, "file-input").send_keys(str(photo))
        wait.until(lambda d: d.execute_script(
            "const h = document.querySelector('#results img.heatmap'); return !!h && !h.hidden && h.naturalWidth > 0"))
        driver.execute_script("document.activeElement.blur()")
        time.sleep(0.5)  # the bars' width transition
        shoot(driver, out / "serve_score.png")

        driver.get(url + "/vote")
        ready = "return !window.perceptionsVote.busy() && window.perceptionsVote.pair() !== null"
        wait.until(lambda d: d.execute_script(ready))
        driver.find_element(By.ID, "voter").send_keys("Ada")
        for button in ("vote-left", "vote-right", "vote-left"):
            driver.find_element(By.ID, button).click()
            wait.until(lambda d: d.execute_script(ready))
        driver.execute_script("document.activeElement.blur()")
        ActionChains(driver).move_to_element(driver.find_element(By.ID, "question")).perform()  # no hover glow
        shoot(driver, out / "serve_vote.png")

        driver.get(url + "/map")
        wait.until(lambda d: d.execute_script("return !!window.perceptionsMap"))
        time.sleep(0.5)
        shoot(driver, out / "serve_map.png")


def main(out: Path = ROOT / "docs" / "images") -> None:
    if not IMAGES.is_dir():
        raise SystemExit(f"{IMAGES} is missing: run `make demo` or `perceptions synth` first")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subset = sorted(p for p in IMAGES.iterdir() if p.name.endswith(f"_{CITY}.JPG"))[::2]
        (tmp / "subset.txt").write_text("".join(f"{p}\n" for p in subset))
        subprocess.run([sys.executable, "-m", "perceptions", "predict", tmp / "subset.txt", "--out",
                        tmp / "predictions.csv", "--model", ROOT / "model", "--no-progress"], check=True, cwd=ROOT)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([sys.executable, "-m", "perceptions", "serve", "--model", ROOT / "model",
                                   "--images", IMAGES, "--votes", tmp / "votes.tsv",
                                   "--predictions", tmp / "predictions.csv", "--port", str(port)], cwd=ROOT)
        try:
            wait_for(url, server)
            pages(url, out, IMAGES / PHOTO)
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
