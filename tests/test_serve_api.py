"""`perceptions serve`'s HTTP API end to end: the real server (`python -m perceptions serve`) on a free loopback
port over a copy of the tiny synthetic city, asked with plain urllib / http.client as a script would.

Scores of a JPEG equal `perceptions predict`'s for the same file; a PNG with alpha scores as the same picture
flattened on white; a heat map comes back as a PNG data URL of the image's size; broken, empty, non-image,
oversized and decompression-bomb uploads each get a 4xx JSON line and the server goes on serving; traversal,
absolute paths, encoded slashes and a symlink out of the folder get 404; bad votes are refused and not written.

The helpers here (`start_server`, `request`, ...) are shared with tests/test_serve_votes.py.
"""
from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from perceptions.studies import STUDY_NAMES

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
ADDRESS = re.compile(r"perceptions serve: http://127\.0\.0\.1:(\d+)/")


# ------------------------------------------------------------------------------------------------ helpers

class Server:
    """A `python -m perceptions serve` process on 127.0.0.1, any free port (--port 0, read from its first line)."""

    def __init__(self, tmp: Path, images: Path, *args: str, timeout: float = 120):
        self.out, self.err = tmp / f"serve_{time.monotonic_ns()}.out", tmp / "serve.err"
        cmd = [sys.executable, "-m", "perceptions", "serve", "--images", str(images), "--port", "0",
               "--model", str(ROOT / "model"), "--device", "cpu", *args]
        with open(self.out, "wb") as out, open(self.err, "ab") as err:
            self.process = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=tmp)
        deadline = time.monotonic() + timeout
        self.port = None
        while True:
            if self.port is None and (found := ADDRESS.search(self.out.read_text())):
                self.port = int(found.group(1))
            if self.port is not None and self._healthy():
                break
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"the server did not come up (exit {self.process.poll()}): "
                            f"{self.out.read_text()[-500:]} {self.err.read_text()[-2000:]}")
            time.sleep(0.2)
        self.line = self.out.read_text().splitlines()[0]

    def _healthy(self) -> bool:
        token = re.search(r"\?token=([^ ;]+)", self.out.read_text())
        try:
            status, body = request(self.port, "GET", "/api/health" + (f"?token={token.group(1)}" if token else ""))
        except OSError:
            return False
        return status == 200 and body == {"status": "ok"}

    def stop(self, sig=signal.SIGINT) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = 60, chunked: bool = False):
    """-> (status, JSON body or raw bytes). The path goes out exactly as given (no normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if chunked:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for name, value in (headers or {}).items():
                conn.putheader(name, value)
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            for i in range(0, len(body), 65536):
                piece = body[i:i + 65536]
                conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            conn.send(b"0\r\n\r\n")
        else:
            conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        kind = response.getheader("content-type", "")
        return response.status, (json.loads(data) if kind.startswith("application/json") else data)
    finally:
        conn.close()


def multipart(data: bytes, field: str = "image", filename: str = "photo.jpg") -> tuple[bytes, dict]:
    boundary = "----perceptions-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def post_image(port: int, data: bytes, query: str = "", **kwargs):
    body, headers = multipart(data, **kwargs)
    return request(port, "POST", "/api/score" + query, body, headers)


def post_json(port: int, path: str, obj, headers: dict | None = None):
    return request(port, "POST", path, json.dumps(obj).encode(), {"Content-Type": "application/json",
                                                                    **(headers or {})})


def assert_error_line(status: int, body, expected: int | tuple) -> None:
    expected = (expected,) if isinstance(expected, int) else expected
    assert status in expected, (status, body)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert body["error"] and "\n" not in body["error"] and "Traceback" not in body["error"], body


def image_ids(images: Path) -> list[str]:
    from perceptions.data.placepulse import list_images

    return [i for i in list_images(images)["location_id"] if isinstance(i, str)]


def data_rows(votes: Path) -> list[list[str]]:
    lines = votes.read_text(encoding="utf-8").split("\n")
    assert lines[0] == "\t".join(("_id", "choice", "left", "right", "study_id", "timestamp", "voter_uniqueid"))
    assert lines[-1] == "", "the file ends with a newline"
    return [line.split("\t") for line in lines[1:-1]]


def jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", **kwargs)
    return buf.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(width: int = 40_000, height: int = 40_000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (1.6 billion by default)."""
    data = png_bytes(Image.new("L", (8, 8)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return data[:8] + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[33:]


# ------------------------------------------------------------------------------------------------ the server

@pytest.fixture(scope="module")
def served(tiny_city, tmp_path_factory):
    """The tiny city's images plus a symlink out of the folder, served with a 1 MB upload limit."""
    tmp = tmp_path_factory.mktemp("serve_api")
    images = tmp / "images"
    shutil.copytree(tiny_city / "images", images)
    outside = tmp / "outside.jpg"
    shutil.copy(next(images.iterdir()), outside)
    os.symlink(outside, images / "51.5_-0.1_0123456789abcdef01234567_Elsewhere.jpg")
    votes = tmp / "votes.tsv"
    server = Server(tmp, images, "--votes", str(votes), "--max-upload-mb", "1")
    yield {"server": server, "port": server.port, "images": images, "votes": votes, "tmp": tmp,
           "ids": [i for i in image_ids(images) if i != "0123456789abcdef01234567"]}
    assert server.stop() == 0, "Ctrl-C stops the server cleanly (exit 0)"
    assert "Traceback" not in server.err.read_text()


def test_health_studies_and_the_start_line(served):
    port = served["port"]
    assert request(port, "GET", "/api/health") == (200, {"status": "ok"})
    status, studies = request(port, "GET", "/api/studies")
    assert status == 200 and [s["key"] for s in studies] == list(STUDY_NAMES)
    assert studies[0] == {"key": "safe", "name": "Safe", "question": "Which place looks safer?"}
    assert served["server"].line == f"perceptions serve: http://127.0.0.1:{port}/ (Score, Map, Vote)"


def test_score_of_a_jpeg_is_what_predict_gives(served):
    from perceptions.cli import main

    path = sorted(served["images"].glob("*.JPG"))[0]
    status, body = post_image(served["port"], path.read_bytes())
    assert status == 200, body
    assert list(body) == ["studies"] and list(body["studies"]) == list(STUDY_NAMES)
    for value in body["studies"].values():
        assert 1.0 <= value["score"] <= 10.0 and isinstance(value["decile"], int) and 1 <= value["decile"] <= 10
    out = served["tmp"] / "predict_one.csv"
    assert main(["predict", str(path), "--model", str(ROOT / "model"), "--device", "cpu", "--out", str(out),
                 "--no-progress", "-q"]) == 0
    row = pd.read_csv(out).iloc[0]
    for study in STUDY_NAMES:
        assert body["studies"][study]["score"] == pytest.approx(row[f"{study}_score"], abs=2e-4)
        assert body["studies"][study]["decile"] == row[f"{study}_decile"]


def test_png_with_alpha_scores_as_the_picture_on_white(served):
    port = served["port"]
    picture = Image.open(sorted(served["images"].glob("*.JPG"))[1]).convert("RGB")
    alpha = Image.fromarray(np.tile(np.linspace(0, 255, picture.width).astype(np.uint8), (picture.height, 1)))
    rgba = picture.copy()
    rgba.putalpha(alpha)
    flat = Image.new("RGB", picture.size, (255, 255, 255))
    flat.paste(picture, mask=alpha)
    status, with_alpha = post_image(port, png_bytes(rgba), filename="a.png")
    assert status == 200, with_alpha
    status, on_white = post_image(port, png_bytes(flat), filename="b.png")
    assert status == 200 and with_alpha == on_white
    status, opaque = post_image(port, png_bytes(picture), filename="c.png")
    assert status == 200 and opaque != with_alpha, "the transparent half really changed the picture"


def test_explain_adds_a_png_heat_map_of_the_image(served):
    path = sorted(served["images"].glob("*.JPG"))[2]
    status, body = post_image(served["port"], path.read_bytes(), query="?explain=safe")
    assert status == 200, body
    assert list(body["studies"]) == list(STUDY_NAMES)
    prefix = "data:image/png;base64,"
    assert body["heatmap"].startswith(prefix)
    heat = Image.open(io.BytesIO(base64.b64decode(body["heatmap"][len(prefix):])))
    assert heat.format == "PNG" and heat.size == Image.open(path).size
    # The overlay is the photo with colour over part of it, not a blank or a copy.
    difference = np.abs(np.asarray(heat.convert("RGB"), float) - np.asarray(Image.open(path).convert("RGB"), float))
    assert 1.0 < difference.mean() < 120.0
    status, body = post_image(served["port"], path.read_bytes(), query="?explain=nonsense")
    assert_error_line(status, body, 400)


def test_bad_uploads_get_one_line_and_the_server_keeps_serving(served):
    port = served["port"]
    good = sorted(served["images"].glob("*.JPG"))[0].read_bytes()
    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (800, 800, 3), dtype=np.uint8))
    oversize = png_bytes(big)
    assert len(oversize) > 1.2 * 2**20
    text = b"just some words, not a picture\n" * 20
    cases = {
        "truncated JPEG": (post_image(port, good[: len(good) // 2]), 400),
        "empty body": (post_image(port, b""), 400),
        "text file named .jpg": (post_image(port, text, filename="x.jpg"), 415),
        "random bytes": (post_image(port, os.urandom(5000)), 415),
        "over --max-upload-mb": (post_image(port, oversize, filename="big.png"), 413),
        "over the limit, streamed without a length": (
            request(port, "POST", "/api/score", *multipart(oversize), chunked=True), 413),
        "decompression bomb": (post_image(port, bomb_png(), filename="bomb.png"), 413),
        "over Pillow's pixel limit (which only warns)": (post_image(port, bomb_png(12_000, 12_000)), 413),
        "no multipart": (request(port, "POST", "/api/score", good, {"Content-Type": "image/jpeg"}), 415),
        "another field name": (post_image(port, good, field="photo"), 400),
        "no body at all": (request(port, "POST", "/api/score"), 415),
    }
    for name, ((status, body), expected) in cases.items():
        assert_error_line(status, body, expected)
        assert request(port, "GET", "/api/health") == (200, {"status": "ok"}), f"after {name}"
    assert post_image(port, good)[0] == 200


def test_only_indexed_images_are_served(served):
    port, images = served["port"], served["images"]
    some = served["ids"][0]
    path = next(p for p in images.iterdir() if some in p.name)
    status, data = request(port, "GET", f"/images/{some}")
    assert status == 200 and data == path.read_bytes()
    attempts = ["/images/../..", "/images/../../etc/passwd", "/images/..%2F..%2Fetc%2Fpasswd",
                "/images/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "/images/..", "/images//etc/passwd",
                f"/images/{path}", "/images/" + str(path).replace("/", "%2F"), f"/images/{path.name}",
                "/images/0123456789abcdef01234567",  # the symlink pointing out of the folder: never indexed
                "/images/ffffffffffffffffffffffff", "/images/", "/../../etc/passwd", "/static/../../etc/passwd"]
    for attempt in attempts:
        status, body = request(port, "GET", attempt)
        assert_error_line(status, body, 404)


def test_pairs_and_votes(served):
    port, votes, ids = served["port"], served["votes"], served["ids"]
    for study in STUDY_NAMES:
        status, pair = request(port, "GET", f"/api/pair?study={study}")
        assert status == 200 and pair["study"] == study and pair["left"] != pair["right"]
        assert {pair["left"], pair["right"]} <= set(ids)
        assert pair["left_url"] == f"/images/{pair['left']}" and pair["right_url"] == f"/images/{pair['right']}"
    assert request(port, "GET", "/api/pair")[1]["study"] == "safe"
    assert_error_line(*request(port, "GET", "/api/pair?study=safety"), 400)
    before = votes.read_bytes() if votes.exists() else b""
    a, b = ids[0], ids[1]
    good = {"study": "lively", "left": a, "right": b, "choice": "equal", "voter": "  <b>Ann</b>\t\"x\"\n"}
    refused = [({**good, "study": "nice"}, 400), ({**good, "left": "nope"}, 400), ({**good, "right": a}, 400),
               ({**good, "choice": "both"}, 400), ({**good, "voter": "v" * 65}, 400), ({**good, "left": 5}, 422),
               ({k: v for k, v in good.items() if k != "choice"}, 422), ({**good, "right": "../" + b}, 400)]
    for body, expected in refused:
        assert_error_line(*post_json(port, "/api/vote", body), expected)
    assert_error_line(*request(port, "POST", "/api/vote", b"{not json", {"Content-Type": "application/json"}),
                      422)
    assert (votes.read_bytes() if votes.exists() else b"") == before, "nothing written for refused votes"
    count = request(port, "GET", "/api/votes/count?study=lively")[1]["count"]
    assert post_json(port, "/api/vote", good) == (200, {"ok": True})
    assert post_json(port, "/api/vote", {**good, "choice": "left", "voter": None}) == (200, {"ok": True})
    assert request(port, "GET", "/api/votes/count?study=lively") == (200, {"count": count + 2})
    rows = data_rows(votes)[-2:]
    lively = "50f62c41a84ea7c5fdd2e454"  # the PP2 study id, as Place Pulse's export has it
    assert [r[1:5] for r in rows] == [["equal", a, b, lively], ["left", a, b, lively]]
    assert rows[0][6] == "<b>Ann</b> x" and rows[1][6] == "anonymous"
    assert all(len(r) == 7 and re.fullmatch(r"[0-9a-f]{24}", r[0]) for r in rows)


def test_pages_and_unknown_routes(served):
    port = served["port"]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/?x=1")
    response = conn.getresponse()
    response.read()
    assert response.status in (302, 303, 307) and response.getheader("location") == "/score?x=1"
    for page in ("/score", "/vote", "/map"):
        status, html = request(port, "GET", page)
        assert status == 200 and b"<html" in html.lower(), page
    assert b"--predictions" in request(port, "GET", "/map")[1], "without --predictions the map page says how"
    status, schema = request(port, "GET", "/api/openapi.json")
    assert status == 200 and {"/api/score", "/api/vote", "/api/pair", "/api/health"} <= set(schema["paths"])
    assert_error_line(*request(port, "GET", "/nothing/here"), 404)
    assert_error_line(*request(port, "DELETE", "/api/health"), 405)
    status, headers = _headers(port, "/api/health")
    assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "no-referrer"


def _headers(port: int, path: str):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()
