"""`perceptions download placepulse` against a small archive served on 127.0.0.1: layout, resume, errors."""
import hashlib
import io
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from perceptions.cli import main
from perceptions.data.download import download_placepulse, fetch
from perceptions.data.placepulse import list_images, read_qscores, read_votes
from perceptions.errors import PerceptionsError

IMAGES = ["42.300506_-71.075835_513d67a9fdc9f03587004128_Boston.JPG",
          "42.276086_-71.061180_513d681dfdc9f03587004269_Boston.JPG",
          "-19.818072_-43.951946_513d5c7afdc9f03587003718_BeloHorizonte.JPG"]
QSCORES = ("\t_id\tlocation_id\tnum_votes\tplace_id\tstudy_id\ttrueskill.score\ttrueskill.stds.-1\n"
           "0\t51e04891fdc9f01d25a47649\t513d67a9fdc9f03587004128\t5\t50e5f168d7c3df413b000279\t"
           "50a68a51fdc9f05596000002\t25.98\t3.67\n")
VOTES = ("_id,choice,left,right,study_id,timestamp,voter_uniqueid\n"
         "a1,left,513d67a9fdc9f03587004128,513d681dfdc9f03587004269,50a68a51fdc9f05596000002,"
         "2014-07-23 17:52:42,b3c7\n")


def _jpeg(seed: int) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (seed * 60 % 255, 90, 120)).save(buf, "JPEG")
    return buf.getvalue()


def _zip(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def _pp2_archive(nested_meta: bool = False) -> bytes:
    members = {f"place-pulse-2.0/images/{name}": _jpeg(i) for i, name in enumerate(IMAGES)}
    members["__MACOSX/place-pulse-2.0/images/._x.JPG"] = b"resource fork"
    members["place-pulse-2.0/readme.txt"] = b"Place Pulse 2.0"
    if nested_meta:  # the original project shipped its labels in a separate meta.zip
        members["meta.zip"] = _zip({"meta/qscores.tsv": QSCORES, "meta/votes.csv": VOTES})
    else:
        members["place-pulse-2.0/qscores.tsv"] = QSCORES
        members["place-pulse-2.0/votes.csv"] = VOTES
    return _zip(members)


class _Server:
    """Serves one payload; can honour Range or not, and can cut the next transfer after N bytes."""

    def __init__(self, payload: bytes):
        self.payload, self.honour_range, self.cut_after, self.ranges = payload, True, None, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if not self.path.startswith("/files/"):
                    self.send_error(404)
                    return
                start = 0
                header = self.headers.get("Range")
                server.ranges.append(header)
                if header and server.honour_range:
                    start = int(header.split("=")[1].split("-")[0])
                    if start >= len(server.payload):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}")
                else:
                    self.send_response(200)
                body = server.payload[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    body, server.cut_after = body[:server.cut_after], None
                    self.close_connection = True
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/files/place-pulse-2.0.zip?dl=1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = _Server(_pp2_archive())
    yield srv
    srv.close()


def test_download_unpacks_into_the_layout_train_reads(server, tmp_path):
    report = download_placepulse(tmp_path, url=server.url, progress=False)
    assert report["archive"]["sha256"] == hashlib.sha256(server.payload).hexdigest()
    assert report["archive"]["bytes"] == len(server.payload)
    assert (tmp_path / "place-pulse-2.0.zip").is_file() and not (tmp_path / "place-pulse-2.0.zip.part").exists()
    images = list_images(tmp_path / "placepulse" / "images")
    assert sorted(images["path"].map(lambda p: p.rsplit("/", 1)[1])) == sorted(IMAGES)  # no ._ junk
    assert report["images"] == 3
    assert len(read_qscores(tmp_path / "placepulse" / "qscores.tsv")) == 1
    assert len(read_votes(tmp_path / "placepulse" / "votes.csv")) == 1


def test_an_interrupted_download_resumes_with_a_range_request(server, tmp_path, capsys):
    half = len(server.payload) // 2
    server.cut_after = half
    code = main(["download", "placepulse", "--dest", str(tmp_path), "--url", server.url, "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "again to resume" in err and "input/README.md" in err
    part = tmp_path / "place-pulse-2.0.zip.part"
    assert part.stat().st_size == half
    code = main(["download", "placepulse", "--dest", str(tmp_path), "--url", server.url, "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert server.ranges[-1] == f"bytes={half}-"
    assert f"resumed at {half:,} bytes" in out
    assert hashlib.sha256(server.payload).hexdigest() in out
    assert (tmp_path / "place-pulse-2.0.zip").read_bytes() == server.payload
    assert len(list_images(tmp_path / "placepulse" / "images")) == 3


def test_a_server_that_ignores_range_restarts_the_file(server, tmp_path):
    server.honour_range = False
    (tmp_path / "a.zip.part").write_bytes(b"stale bytes from another file")
    result = fetch(server.url, tmp_path / "a.zip", progress=False)
    assert (tmp_path / "a.zip").read_bytes() == server.payload
    assert result["sha256"] == hashlib.sha256(server.payload).hexdigest()


def test_a_complete_part_file_is_finished_without_new_bytes(server, tmp_path):
    (tmp_path / "a.zip.part").write_bytes(server.payload)
    fetch(server.url, tmp_path / "a.zip", progress=False)
    assert (tmp_path / "a.zip").read_bytes() == server.payload


def test_labels_in_a_nested_meta_zip_are_found(tmp_path):
    archive = tmp_path / "pp2.zip"
    archive.write_bytes(_pp2_archive(nested_meta=True))
    report = download_placepulse(tmp_path / "input", archive=archive, progress=False)
    assert report["images"] == 3
    assert len(read_qscores(report["qscores"])) == 1
    assert len(read_votes(report["votes"])) == 1


def test_no_network_is_one_clear_line_with_the_manual_route(tmp_path, capsys):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = main(["download", "placepulse", "--dest", str(tmp_path), "--url", f"http://127.0.0.1:{port}/pp2.zip",
                 "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err.startswith("perceptions download: error: could not download") and "--archive" in err


def test_only_http_addresses_are_accepted(tmp_path):
    with pytest.raises(PerceptionsError, match="http"):
        download_placepulse(tmp_path, url="file:///etc/passwd", progress=False)
    assert not (tmp_path / "place-pulse-2.0.zip").exists()


def test_a_missing_file_on_the_server_is_reported(server, tmp_path):
    with pytest.raises(PerceptionsError, match="could not download.*Not Found"):
        fetch(server.url.replace("/files/", "/nothing/"), tmp_path / "x.zip", progress=False)
    assert not (tmp_path / "x.zip").exists()


def test_an_archive_without_images_or_not_a_zip_is_refused(tmp_path):
    empty = tmp_path / "empty.zip"
    empty.write_bytes(_zip({"notes.txt": "nothing here"}))
    with pytest.raises(PerceptionsError, match="no images"):
        download_placepulse(tmp_path / "a", archive=empty, progress=False)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"<html>Dropbox says hello</html>")
    with pytest.raises(PerceptionsError, match="not a readable zip"):
        download_placepulse(tmp_path / "b", archive=broken, progress=False)


def test_an_unpacked_dataset_is_not_overwritten_silently(server, tmp_path):
    target = tmp_path / "placepulse"
    target.mkdir()
    (target / "qscores.tsv").write_text("mine")
    with pytest.raises(PerceptionsError, match="--overwrite"):
        download_placepulse(tmp_path, url=server.url, progress=False)
    assert (target / "qscores.tsv").read_text() == "mine"
    assert server.ranges == []  # refused before downloading anything
    download_placepulse(tmp_path, url=server.url, overwrite=True, progress=False)
    assert (target / "qscores.tsv").read_text() == QSCORES
