"""The parts of `perceptions serve` on their own, without a server: the vote store, the image index, the
micro-batcher, the pair choosers' start-up, the upload checks, the access helpers and the command's one-line
errors."""
from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from perceptions.errors import PerceptionsError
from perceptions.serve.access import access_token, is_loopback, token_matches
from perceptions.serve.batching import MicroBatcher
from perceptions.serve.images import ImageIndex
from perceptions.serve.votes import HEADER, VoteError, VoteLog, clean_voter
from test_serve_api import bomb_png, jpeg_bytes, png_bytes


def ids_of(folder) -> list[str]:
    from perceptions.data.placepulse import list_images

    return [i for i in list_images(folder)["location_id"] if isinstance(i, str)]


# ------------------------------------------------------------------------------------------------ votes

def test_votes_append_whole_rows_that_score_reads(tmp_path, tiny_city):
    from perceptions.data.placepulse import read_votes

    a, b, c = ids_of(tiny_city / "images")[:3]
    log = VoteLog(tmp_path / "votes.tsv")
    assert not (tmp_path / "votes.tsv").exists(), "no file until the first vote"
    log.append("safe", a, b, "left", "Ann")
    log.append("wealthy", b, c, "equal", clean_voter(None))
    text = (tmp_path / "votes.tsv").read_text()
    assert text.startswith(HEADER) and text.count("\n") == 3 and text.count(HEADER) == 1
    votes = read_votes(tmp_path / "votes.tsv")
    assert votes[["study", "left", "right", "choice", "voter"]].values.tolist() == [
        ["safe", a, b, "left", "Ann"], ["wealthy", b, c, "equal", "anonymous"]]
    assert log.count("safe") == 1 and log.count() == 2
    again = VoteLog(tmp_path / "votes.tsv")  # a restart counts what is there
    assert again.count("wealthy") == 1 and again.count() == 2 and len(again.existing) == 2


def test_a_torn_last_row_is_kept_and_never_glued_to_the_next(tmp_path, tiny_city, caplog):
    from perceptions.data.placepulse import read_votes

    a, b = ids_of(tiny_city / "images")[:2]
    path = tmp_path / "votes.tsv"
    VoteLog(path).append("safe", a, b, "left", "Ann")
    whole = path.read_bytes()
    path.write_bytes(whole + b"0123456789abcdef01234567\tright\t" + a.encode())  # a writer killed mid-row
    with caplog.at_level(logging.WARNING, logger="perceptions"):
        log = VoteLog(path)
    assert log.torn and log.count() == 1 and "incomplete" in caplog.text
    log.append("lively", b, a, "right", "Bob")
    lines = path.read_text().split("\n")
    assert lines[2] == "0123456789abcdef01234567\tright\t" + a, "the user's bytes are left as they were"
    assert lines[3].split("\t")[1:5] == ["right", b, a, "50f62c41a84ea7c5fdd2e454"] and lines[4] == ""
    with pytest.raises(PerceptionsError, match="row 3"):
        read_votes(path)  # the torn row is named for the user to remove, never silently merged


def test_a_votes_file_of_another_layout_is_refused(tmp_path):
    other = tmp_path / "votes.csv"
    other.write_text("left_id,right_id,winner,category\na,b,left,safety\n")
    with pytest.raises(PerceptionsError, match="not a votes file in the layout serve appends to"):
        VoteLog(other)
    with pytest.raises(PerceptionsError, match="does not exist"):
        VoteLog(tmp_path / "no" / "votes.tsv")
    with pytest.raises(PerceptionsError, match="is a folder"):
        VoteLog(tmp_path)


def test_concurrent_appends_from_threads_never_interleave(tmp_path, tiny_city):
    ids = ids_of(tiny_city / "images")
    log = VoteLog(tmp_path / "votes.tsv")
    voter = "x" * 64

    def vote(k):
        for i in range(50):
            log.append("boring", ids[(k + i) % len(ids)], ids[(k + i + 1) % len(ids)], "equal", voter)
    threads = [threading.Thread(target=vote, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = (tmp_path / "votes.tsv").read_text().split("\n")
    assert len(lines) == 1 + 400 + 1 and all(len(line.split("\t")) == 7 and line.endswith(voter)
                                             for line in lines[1:-1])


def test_voter_names_are_cleaned_or_refused():
    assert clean_voter("  Ann\tB\n\"C\"  ") == "Ann B C"
    assert clean_voter("") == "anonymous" and clean_voter(None) == "anonymous" and clean_voter("\t\n") == "anonymous"
    assert clean_voter("<script>alert(1)</script>") == "<script>alert(1)</script>"  # text; the page escapes it
    assert clean_voter("é" * 64) == "é" * 64
    with pytest.raises(VoteError, match="at most 64"):
        clean_voter("v" * 65)
    with pytest.raises(VoteError):
        clean_voter(12)


# ------------------------------------------------------------------------------------------------ images

def test_the_index_keeps_only_named_files_inside_the_folder(tmp_path, tiny_city, caplog):
    folder = tmp_path / "images"
    shutil.copytree(tiny_city / "images", folder)
    files = sorted(folder.iterdir())
    outside = tmp_path / "secret.jpg"
    Image.new("RGB", (8, 8)).save(outside)
    os.symlink(outside, folder / "1.0_2.0_aaaaaaaaaaaaaaaaaaaaaaaa_Out.jpg")
    os.symlink(files[0], folder / "1.0_2.0_bbbbbbbbbbbbbbbbbbbbbbbb_In.jpg")   # a link inside: fine
    shutil.copy(files[1], folder / "photo_0001.jpg")                             # no id in its name
    (folder / "sub").mkdir()
    shutil.copy(files[2], folder / "sub" / files[2].name)                        # the same id twice
    with caplog.at_level(logging.WARNING, logger="perceptions"):
        index = ImageIndex(folder)
    assert len(index) == len(files) + 1
    assert "aaaaaaaaaaaaaaaaaaaaaaaa" not in index and index.path("aaaaaaaaaaaaaaaaaaaaaaaa") is None
    assert index.path("bbbbbbbbbbbbbbbbbbbbbbbb") == os.path.realpath(files[0])
    duplicate = files[2].name.split("_")[2]
    assert index.path(duplicate) == os.path.realpath(files[2]), "the first in path order is kept"
    for bad in ("..", "../..", "/etc/passwd", str(files[0]), files[0].name, "", None):
        assert index.path(bad) is None and bad not in index
    assert "pointing outside" in caplog.text and "already taken" in caplog.text and "not named" in caplog.text


def test_a_folder_without_usable_images_is_one_error(tmp_path):
    with pytest.raises(PerceptionsError, match="no such folder"):
        ImageIndex(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PerceptionsError, match="no .jpg/.png images"):
        ImageIndex(tmp_path / "empty")
    Image.new("RGB", (8, 8)).save(tmp_path / "empty" / "holiday.jpg")
    with pytest.raises(PerceptionsError, match="1 image file"):
        ImageIndex(tmp_path / "empty")


# ------------------------------------------------------------------------------------------------ batching

def test_the_batcher_puts_concurrent_requests_into_one_call():
    calls = []

    def run(items):
        calls.append(list(items))
        time.sleep(0.05)  # a model call: requests arriving meanwhile wait for the next batch
        return [item * 10 for item in items]
    batcher = MicroBatcher(run, max_batch=8, max_wait_s=0.05)
    try:
        futures = [batcher.submit(i) for i in range(20)]
        assert [f.result(10) for f in futures] == [i * 10 for i in range(20)]
    finally:
        batcher.close()
    assert sorted(x for call in calls for x in call) == list(range(20))
    assert max(len(c) for c in calls) == 8 and len(calls) <= 4 and batcher.batches == len(calls)


def test_a_failed_batch_fails_its_requests_and_the_batcher_goes_on():
    def run(items):
        if "bad" in items:
            raise RuntimeError("model failed")
        return items
    batcher = MicroBatcher(run, max_batch=4, max_wait_s=0.2)
    try:
        bad = [batcher.submit("bad"), batcher.submit("ok")]
        for f in bad:
            with pytest.raises(RuntimeError, match="model failed"):
                f.result(10)
        assert batcher.submit("fine").result(10) == "fine"
    finally:
        batcher.close()
    late = batcher.submit("late")
    with pytest.raises(RuntimeError, match="shutting down"):
        late.result(1)


# ------------------------------------------------------------------------------------------------ pairs

def test_choosers_start_from_the_votes_in_the_file(tiny_city):
    from perceptions.data.placepulse import read_votes
    from perceptions.data.scoring import score_votes
    from perceptions.serve.choosers import StudyPairs

    ids = ids_of(tiny_city / "images")
    votes = read_votes(tiny_city / "votes.tsv")
    pairs = StudyPairs(ids, "active", votes, seed=0)
    assert pairs.replayed == len(votes) and pairs.skipped == 0
    safe = pairs.chooser("safe")
    mine = votes[votes["study"] == "safe"]
    assert safe.comparisons.sum() == 2 * len(mine)
    # The replayed state is the TrueSkill that `perceptions score` computes from the same file.
    scores = score_votes(mine).set_index("location_id")
    at = [ids.index(i) for i in scores.index]
    assert abs(safe.mu[at] - scores["trueskill.score"].to_numpy()).max() < 1e-9
    assert abs(safe.sigma[at] - scores["trueskill.stds.-1"].to_numpy()).max() < 1e-9
    left, right = pairs.next_pair("safe")
    assert left != right and {left, right} <= set(ids)
    pairs.add_vote("safe", left, right, "left")
    assert safe.comparisons.sum() == 2 * len(mine) + 2
    only_some = StudyPairs(ids[:10], "random", votes, seed=0)
    assert only_some.skipped > 0 and only_some.replayed + only_some.skipped == len(votes)


# ------------------------------------------------------------------------------------------------ uploads

def test_uploads_are_sniffed_from_their_bytes():
    from perceptions.serve.uploads import UploadError, sniff

    picture = Image.new("RGB", (40, 30), (10, 200, 30))
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8))
    assert sniff(jpeg_bytes(picture), 10**6) == "JPEG" and sniff(png_bytes(picture), 10**6) == "PNG"
    for data, status in ((b"%!PS-Adobe-3.0 EPSF-3.0\n", 415), (b"GIF87a", 415), (bomb_png(), 413),
                         (png_bytes(Image.new("RGB", (2000, 1000))), 413), (jpeg_bytes(picture)[:20], 415),
                         (png_bytes(noise)[: len(png_bytes(noise)) // 2], 400)):
        with pytest.raises(UploadError) as caught:
            sniff(data, 10**6)
        assert caught.value.status == status and "\n" not in caught.value.message


# ------------------------------------------------------------------------------------------------ access, command

def test_loopback_addresses_and_token_comparison():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.9.10", "::1", "localhost", "[::1]"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "example.org"))
    assert token_matches("abc", "abc") and not token_matches("abd", "abc") and not token_matches(None, "abc")
    assert access_token("127.0.0.1", None) == (None, False) and access_token("0.0.0.0", "s3") == ("s3", False)
    made, generated = access_token("0.0.0.0", None)
    assert generated and len(made) >= 32 and made != access_token("192.168.1.5", None)[0]
    for bad in ("", "  ", " s3"):
        with pytest.raises(PerceptionsError, match="--token"):
            access_token("127.0.0.1", bad)


def test_the_map_page_is_the_html_map_of_the_predictions(tmp_path):
    from perceptions.serve.pages import map_page

    rows = pd.DataFrame({"path": ["a.jpg", "b.jpg"], "lat": [51.5, 51.6], "lon": [-0.1, -0.2],
                         "safe_score": [3.5, 7.25], "safe_decile": [2, 9]})
    rows.to_csv(tmp_path / "predictions.csv", index=False)
    html = map_page(tmp_path / "predictions.csv")
    assert "L.map" in html and "7.25" in html and "unpkg.com" not in html
    with pytest.raises(PerceptionsError, match="no such file"):
        map_page(tmp_path / "missing.csv")


def test_the_command_stops_with_one_line(tmp_path, tiny_city, capsys):
    from perceptions.cli import main
    from perceptions.commands.serve import address_line

    assert main(["serve", "--images", str(tmp_path / "none"), "--port", "0"]) == 2
    assert capsys.readouterr().err.strip().endswith("no such folder")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--images", str(tiny_city / "images"), "--port", str(port)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("perceptions serve: error: cannot listen on 127.0.0.1:") and "\n" not in err
    bad = tmp_path / "votes.tsv"
    bad.write_text("a,b\n1,2\n")
    assert main(["serve", "--images", str(tiny_city / "images"), "--votes", str(bad), "--port", "0"]) == 2
    assert "not a votes file" in capsys.readouterr().err
    line = address_line("0.0.0.0", 8000, "t/k", generated=True)
    assert line.startswith("perceptions serve: http://0.0.0.0:8000/?token=t%2Fk (Score, Map, Vote); vote page: "
                           "http://0.0.0.0:8000/vote?token=t%2Fk")


def test_served_map_links_back_to_the_other_pages_carrying_the_token():
    from pathlib import Path

    import perceptions.places
    from perceptions.serve.pages import with_nav

    # The bar goes after the map template's plain <body> tag: the real template must have one.
    template = Path(perceptions.places.__file__).with_name("templates") / "map.html"
    assert template.read_text().count("<body>") == 1
    page = "<html><body><div id=map></div></body></html>"
    served = with_nav(page, 'a&b"<')
    assert served.count("<body>") == 1 and served.index("<nav") > served.index("<body>")
    assert 'href="/score?token=a%26b%22%3C"' in served and 'href="/vote?token=a%26b%22%3C"' in served
    assert 'href="/score"' in with_nav(page, "")
