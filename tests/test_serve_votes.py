"""Votes through the real server (`python -m perceptions serve` on a loopback port), under load and under a kill.

1,000 votes from 20 concurrent clients on a server with a token give exactly 1,000 whole rows that `perceptions
score --votes` (the real command) reads; a server killed with SIGKILL in the middle of such a load leaves only
whole rows, and a server started again on the same file appends to it and the file still scores.
"""
from __future__ import annotations

import http.client
import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from perceptions.studies import STUDIES, STUDY_NAMES
from test_serve_api import Server, assert_error_line, data_rows, image_ids, post_json, request

pytestmark = pytest.mark.slow
STUDY_IDS = {s.study_id for s in STUDIES}


class Voter(threading.Thread):
    """One client on its own keep-alive connection: `n` votes (or until `stop`), some on pairs the server chose."""

    def __init__(self, port: int, ids: list[str], n: int, seed: int, token: str | None = None, stop=None):
        super().__init__(daemon=True)
        self.port, self.ids, self.n, self.token, self.stop = port, ids, n, token, stop
        self.rng, self.voter = random.Random(seed), f"client {seed}"
        self.acked, self.failed, self.error = 0, 0, None

    def run(self):
        headers = {"Content-Type": "application/json", **({"X-Token": self.token} if self.token else {})}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            for i in range(self.n):
                if self.stop is not None and self.stop.is_set():
                    break
                study = self.rng.choice(STUDY_NAMES)
                if i % 5 == 0:
                    conn.request("GET", f"/api/pair?study={study}", headers=headers)
                    pair = json.loads(conn.getresponse().read())
                    left, right = pair["left"], pair["right"]
                else:
                    left, right = self.rng.sample(self.ids, 2)
                vote = {"study": study, "left": left, "right": right,
                        "choice": self.rng.choice(["left", "right", "equal"]), "voter": self.voter}
                conn.request("POST", "/api/vote", body=json.dumps(vote).encode(), headers=headers)
                response = conn.getresponse()
                body = response.read()
                if response.status != 200 or json.loads(body) != {"ok": True}:
                    self.failed += 1
                else:
                    self.acked += 1
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self.error = exc  # the server went away (the kill test)
        finally:
            conn.close()


def score_votes(votes: Path, out: Path) -> str:
    """`perceptions score --votes FILE` as a user runs it; returns its output line."""
    done = subprocess.run([sys.executable, "-m", "perceptions", "score", "--votes", str(votes), "--out", str(out),
                           "--overwrite"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def check_whole_rows(votes: Path, ids: set[str]) -> list[list[str]]:
    rows = data_rows(votes)
    for row in rows:
        assert len(row) == 7, row
        assert row[1] in ("left", "right", "equal") and row[2] in ids and row[3] in ids and row[2] != row[3]
        assert row[4] in STUDY_IDS and len(row[0]) == 24 and row[6].startswith("client ")
    assert len({row[0] for row in rows}) == len(rows), "vote ids are unique"
    return rows


def test_token_guards_everything_and_1000_concurrent_votes_are_1000_rows(tiny_city, tmp_path):
    images, votes, token = tiny_city / "images", tmp_path / "votes.tsv", "s3cret-token"
    server = Server(tmp_path, images, "--votes", str(votes), "--token", token, "--pairs", "random")
    try:
        port, ids = server.port, image_ids(images)
        assert server.line.startswith(f"perceptions serve: http://127.0.0.1:{port}/?token={token} ")
        for path in ("/api/health", "/api/studies", "/api/pair?study=safe", f"/images/{ids[0]}", "/score", "/vote",
                     "/map", "/api/votes/count", "/api/health?token=wrong"):
            assert_error_line(*request(port, "GET", path), 401)
        assert_error_line(*post_json(port, "/api/vote", {"study": "safe", "left": ids[0], "right": ids[1],
                                                         "choice": "left"}), 401)
        assert not votes.exists(), "a refused vote writes nothing"
        assert request(port, "GET", f"/api/health?token={token}") == (200, {"status": "ok"})
        assert request(port, "GET", "/api/health", headers={"X-Token": token}) == (200, {"status": "ok"})
        status, pair = request(port, "GET", "/api/pair?study=beautiful", headers={"X-Token": token})
        assert status == 200 and pair["left_url"] == f"/images/{pair['left']}?token={token}"
        status, data = request(port, "GET", pair["left_url"])
        assert status == 200 and data[:2] == b"\xff\xd8"
        status, page = request(port, "GET", f"/vote?token={token}")
        assert status == 200 and token.encode() in page
        assert request(port, "GET", "/static/serve.css")[0] == 200, "static files need no token"

        voters = [Voter(port, ids, 50, seed, token=token) for seed in range(20)]
        started = time.monotonic()
        for v in voters:
            v.start()
        for v in voters:
            v.join(240)
        took = time.monotonic() - started
        assert [v.error for v in voters] == [None] * 20 and sum(v.acked for v in voters) == 1000, took
        assert request(port, "GET", "/api/votes/count", headers={"X-Token": token}) == (200, {"count": 1000})
    finally:
        assert server.stop() == 0
    rows = check_whole_rows(votes, set(ids))
    assert len(rows) == 1000
    line = score_votes(votes, tmp_path / "qscores.tsv")
    assert line.startswith("scored 1000 votes:"), line


def test_sigkill_during_votes_leaves_whole_rows_and_a_restart_appends(tiny_city, tmp_path):
    images, votes = tiny_city / "images", tmp_path / "votes.tsv"
    ids = image_ids(images)
    server = Server(tmp_path, images, "--votes", str(votes))
    stop = threading.Event()
    voters = [Voter(server.port, ids, 10_000, seed, stop=stop) for seed in range(20)]
    for v in voters:
        v.start()
    deadline = time.monotonic() + 120
    while sum(v.acked for v in voters) < 150 and time.monotonic() < deadline:
        time.sleep(0.02)
    server.process.send_signal(signal.SIGKILL)  # in the middle of the load: 20 votes in flight
    server.process.wait(30)
    stop.set()
    for v in voters:
        v.join(60)
    acked = sum(v.acked for v in voters)
    assert acked >= 150 and any(v.error is not None for v in voters), "the kill came while votes were arriving"
    rows = check_whole_rows(votes, set(ids))
    # Every acknowledged vote is on disk; at most the ones in flight were written but not acknowledged.
    assert acked <= len(rows) <= acked + len(voters)
    assert votes.read_bytes().endswith(b"\n")

    again = Server(tmp_path, images, "--votes", str(votes))
    try:
        assert request(again.port, "GET", "/api/votes/count") == (200, {"count": len(rows)})
        more = [Voter(again.port, ids, 5, 100 + seed) for seed in range(2)]
        for v in more:
            v.start()
        for v in more:
            v.join(120)
        assert sum(v.acked for v in more) == 10
    finally:
        assert again.stop() == 0
    after = check_whole_rows(votes, set(ids))
    assert after[: len(rows)] == rows and len(after) == len(rows) + 10
    assert score_votes(votes, tmp_path / "qscores.tsv").startswith(f"scored {len(after)} votes:")
