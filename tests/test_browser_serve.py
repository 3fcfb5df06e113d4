"""`perceptions serve`'s pages in a real headless Chromium (tests/browser_helpers.py) against the real server, started
as `python -m perceptions serve` on a free loopback port over a 40-image synthetic city: a photo uploaded on the
Score page gets six scores (the same as `perceptions predict` gives it) and a heat map, a broken file one error
line; five votes cast with clicks and keys are exactly the five new rows of the votes file; the Map page draws;
user and server text is shown as text only. The server runs with --token, so every call the pages make carries it.
Skipped, loudly, where chromium/chromium-driver are not installed."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import pandas as pd
import pytest

from browser_helpers import MISSING, chromium, find_browser
from perceptions.cli import main
from perceptions.studies import STUDIES, STUDY_NAMES

if find_browser() is None:
    warnings.warn(MISSING, stacklevel=1)
    pytest.skip(MISSING, allow_module_level=True)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
XSS = "<img src=x onerror=alert(1)>"
# The server runs with a token, so every request the pages make must carry it (an "&" tests its encoding).
TOKEN = "s3cret&more"
QUERY = "?token=s3cret%26more"
STUDY_ID = {s.name: s.study_id for s in STUDIES}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    request = urllib.request.Request(url, headers={"X-Token": TOKEN})
    with urllib.request.urlopen(request, timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The real server over a small synthetic city and its predictions; yields its URL and files."""
    tmp = tmp_path_factory.mktemp("serve")
    assert main(["synth", "--out", str(tmp / "city"), "--images", "40", "--cities", "1", "--votes-per-image", "1",
                 "--no-progress", "-q"]) == 0
    predictions = tmp / "predictions.csv"
    assert main(["predict", str(tmp / "city" / "images"), "--model", str(ROOT / "model"), "--out", str(predictions),
                 "--no-progress", "-q"]) == 0
    port, votes, log = free_port(), tmp / "votes.tsv", tmp / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "perceptions", "serve", "--model", str(ROOT / "model"),
             "--images", str(tmp / "city" / "images"), "--votes", str(votes), "--predictions", str(predictions),
             "--port", str(port), "--token", TOKEN], stdout=out, stderr=subprocess.STDOUT, cwd=tmp)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if get_json(url + "/api/health") == {"status": "ok"}:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the server did not come up (exit {process.poll()}): {log.read_text()[-2000:]}")
            time.sleep(0.25)
        yield {"url": url, "votes": votes, "predictions": pd.read_csv(predictions), "log": log}
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def vote_rows(votes: Path) -> pd.DataFrame:
    if not votes.exists():
        return pd.DataFrame(columns=["choice", "left", "right", "study_id", "voter_uniqueid"])
    return pd.read_csv(votes, sep="\t", dtype=str, keep_default_na=False)


def no_alert(driver) -> bool:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        driver.switch_to.alert
    except NoAlertPresentException:
        return True
    return False


def severe_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_score_a_photo_and_a_broken_file(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    row = server["predictions"].iloc[0]
    broken = tmp_path / f"{XSS}.jpg"  # the name and the server's answer must both show as text only
    broken.write_bytes(b"this is not a JPEG")
    with chromium(1200, 800) as driver:
        driver.get(server["url"] + "/score" + QUERY)
        driver.find_element(By.ID, "file-input").send_keys(f"{row['path']}\n{broken}")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .result")) == 2)
        good, bad = driver.find_elements(By.CSS_SELECTOR, "#results .result")
        wait.until(lambda d: d.execute_script(
            "const h = arguments[0].querySelector('img.heatmap'); return !h.hidden && h.complete && h.naturalWidth > 0",
            good))
        for study in STUDY_NAMES:
            cells = good.find_element(By.CSS_SELECTOR, f".study-row[data-study={study}]")
            score = float(cells.find_element(By.CSS_SELECTOR, ".score").text)
            decile = int(cells.find_element(By.CSS_SELECTOR, ".decile").text)
            assert 1 <= score <= 10 and 1 <= decile <= 10
            # The page shows what `perceptions predict` wrote for the same image (2 decimals on the page).
            assert score == pytest.approx(row[f"{study}_score"], abs=0.02), study
            assert decile == row[f"{study}_decile"], study
        assert not good.find_element(By.CSS_SELECTOR, ".error").is_displayed()
        first = good.find_element(By.CSS_SELECTOR, "img.heatmap").get_attribute("src")
        assert first.startswith("data:image/png;base64,")

        Select(good.find_element(By.CSS_SELECTOR, "select.explain-study")).select_by_value("lively")
        wait.until(lambda d: d.execute_script(
            "const h = arguments[0].querySelector('img.heatmap'); return h.dataset.study === 'lively' && "
            "h.complete && h.naturalWidth > 0", good))
        assert good.find_element(By.CSS_SELECTOR, "img.heatmap").get_attribute("src") != first  # another map

        wait.until(lambda d: bad.find_element(By.CSS_SELECTOR, ".error").is_displayed())
        message = bad.find_element(By.CSS_SELECTOR, ".error").text
        assert message and "\n" not in message and "Traceback" not in message
        assert not bad.find_elements(By.CSS_SELECTOR, ".study-row .fill[style]")  # no scores for it
        assert XSS in bad.find_element(By.CSS_SELECTOR, ".name").text
        assert driver.execute_script("return document.querySelectorAll('img[src=\"x\"]').length") == 0
        assert no_alert(driver)
        # The only failed request: the refused upload (a 4xx).
        assert all(re.search(r"/api/score\S* .*status of 4\d\d", m) for m in severe_errors(driver))


def cast(driver, how: str, expected_count: int) -> dict:
    """One vote by `how` (a button id or a key); returns the pair that was on screen when it was cast."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ready = "return !window.perceptionsVote.busy() && window.perceptionsVote.pair() !== null"
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(ready))
    pair = driver.execute_script("return window.perceptionsVote.pair()")
    if how.startswith("#"):
        # A double click: the buttons are disabled while the vote is on its way, so it is one vote.
        ActionChains(driver).double_click(driver.find_element(By.CSS_SELECTOR, how)).perform()
    else:
        driver.execute_script("document.activeElement && document.activeElement.blur()")
        ActionChains(driver).send_keys(how).perform()
    WebDriverWait(driver, 30).until(
        lambda d: int(d.find_element(By.ID, "count").text) >= expected_count and d.execute_script(ready))
    assert driver.find_element(By.ID, "count").text == str(expected_count), f"{how} sent more than one vote"
    return pair


def test_five_votes_with_clicks_and_keys_are_five_rows(server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    before = len(vote_rows(server["votes"]))
    with chromium(1200, 800) as driver:
        driver.get(server["url"] + "/vote" + QUERY)
        Select(driver.find_element(By.ID, "study")).select_by_value("lively")
        assert driver.find_element(By.ID, "question").text == "Which place looks livelier?"
        start = get_json(server["url"] + "/api/votes/count?study=lively")["count"]
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "count").text == str(start) and
                                        d.execute_script("return document.getElementById('left-image').naturalWidth"
                                                         " > 0 && document.getElementById('right-image')"
                                                         ".naturalWidth > 0"))
        driver.find_element(By.ID, "voter").send_keys("Ada Tester")
        steps = [("#vote-left", "left"), (Keys.ARROW_RIGHT, "right"), ("=", "equal"), ("#vote-right", "right"),
                 (Keys.ARROW_LEFT, "left")]
        pairs = [cast(driver, how, start + i + 1) for i, (how, _) in enumerate(steps)]
        assert driver.find_element(By.ID, "voter-shown").text == "Ada Tester"
        assert severe_errors(driver) == []
    rows = vote_rows(server["votes"]).iloc[before:]
    assert len(rows) == 5
    assert rows["choice"].tolist() == [choice for _, choice in steps]
    assert (rows["study_id"] == STUDY_ID["lively"]).all()
    assert (rows["voter_uniqueid"] == "Ada Tester").all()
    assert rows[["left", "right"]].values.tolist() == [[p["left"], p["right"]] for p in pairs]
    assert all(p["study"] == "lively" for p in pairs)
    assert get_json(server["url"] + "/api/votes/count?study=lively")["count"] == start + 5


def test_a_voter_name_is_only_ever_text(server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    before = len(vote_rows(server["votes"]))
    with chromium(1200, 800) as driver:
        driver.get(server["url"] + "/vote" + QUERY)
        count = get_json(server["url"] + "/api/votes/count?study=safe")["count"]
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "count").text == str(count))
        driver.find_element(By.ID, "voter").send_keys(XSS)
        cast(driver, "#vote-equal", count + 1)
        driver.refresh()  # the name comes back from localStorage, into a text node
        WebDriverWait(driver, 30).until(lambda d: d.execute_script("return !!window.perceptionsVote"))
        assert driver.find_element(By.ID, "voter").get_attribute("value") == XSS
        assert driver.find_element(By.ID, "voter-shown").text == XSS
        assert driver.execute_script("return document.querySelectorAll('img[src=\"x\"]').length") == 0
        assert no_alert(driver)
    rows = vote_rows(server["votes"]).iloc[before:]
    assert rows["voter_uniqueid"].tolist() == [XSS] and rows["choice"].tolist() == ["equal"]
    assert rows["study_id"].tolist() == [STUDY_ID["safe"]]


def test_map_page_draws_the_predictions(server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with chromium(1200, 800) as driver:
        driver.get(server["url"] + "/score" + QUERY)
        links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "nav a")]
        assert links == [f"{server['url']}/{page}{QUERY}" for page in ("score", "map", "vote")]
        driver.find_element(By.LINK_TEXT, "Map").click()  # from the nav bar, as a user gets there
        WebDriverWait(driver, 30).until(lambda d: d.execute_script("return !!window.perceptionsMap"))
        assert driver.current_url == f"{server['url']}/map{QUERY}"
        assert driver.execute_script("return window.perceptionsMap.count") == len(server["predictions"])
        drawn = driver.execute_script("return document.querySelectorAll('path.leaflet-interactive').length")
        assert drawn == len(server["predictions"])
