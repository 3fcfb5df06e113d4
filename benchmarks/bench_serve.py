"""Benchmark 9: the web app's scoring throughput under concurrent clients, against `perceptions predict`.

Case: `perceptions serve` (the real command, in its own process, on a loopback port) with the shipped model; a
bounded load generator in this process: CLIENTS threads, each on its own keep-alive connection, post the bench
city's 400x300 JPEGs to `/api/score` (multipart, as the Score page does) until REQUESTS requests have been
answered; images/s over the round, and the latency of each request (p50, p95).
Reference: the library's predict path on the same files in this process (`PerceptionModel.predict`: decoding,
batches of 64, the same inference path; what `perceptions predict` runs), images/s.
Ratio = serve images/s / predict images/s, the two timed in alternation (target >= 0.6): the micro-batcher
has to gather the concurrent uploads into shared model calls for the server to come near predict's batches.

    .venv/bin/python -m benchmarks.bench_serve [--quick]
"""
from __future__ import annotations

import http.client
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.common import (REPO, WORK, alternate, bench_city, city_images, median, paired_ratio, rate,
                               run_as_script, verdict)

TARGET = 0.6
CLIENTS = 16
ADDRESS = re.compile(r"perceptions serve: http://127\.0\.0\.1:(\d+)/")


class ServeProcess:
    """`python -m perceptions serve` on 127.0.0.1 (a free port), stopped with Ctrl-C."""

    def __init__(self, images: Path, model: Path, timeout: float = 180):
        WORK.mkdir(parents=True, exist_ok=True)
        self.log = WORK / "bench_serve.log"
        votes = WORK / "bench_serve_votes.tsv"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "perceptions", "serve", "--images", str(images), "--model", str(model),
                 "--votes", str(votes), "--port", "0", "--device", "cpu"],
                stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        deadline, self.port = time.monotonic() + timeout, None
        while self.port is None or not self._healthy():
            if self.port is None and (found := ADDRESS.search(self.log.read_text())):
                self.port = int(found.group(1))
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"perceptions serve did not start: {self.log.read_text()[-1500:]}")
            time.sleep(0.2)

    def _healthy(self) -> bool:
        try:
            return post(self.port, None, "/api/health")[0] == 200
        except OSError:
            return False

    def stop(self) -> None:
        import signal

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


BOUNDARY = "bench-serve-boundary"


def multipart(data: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"photo.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def post(port: int, body: bytes | None, path: str = "/api/score", conn=None):
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        if body is None:
            conn.request("GET", path)
        else:
            conn.request("POST", path, body=body,
                         headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        if own:
            conn.close()


def load(port: int, bodies: list[bytes], requests: int, clients: int = CLIENTS):
    """Post `requests` uploads (bodies in turn) from `clients` threads; -> (latencies in s, failures)."""
    latencies, failures, lock = [], [], threading.Lock()
    counter = iter(range(requests))

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                status, _ = post(port, bodies[i % len(bodies)], conn=conn)
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    if status != 200:
                        failures.append(status)
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, failures


def percentile(values, q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q))


def run(quick: bool = False, n_images: int | None = None, requests: int | None = None,
        repeats: int | None = None) -> dict:
    from perceptions.predict.model import load_model, resolve_model_dir

    n_images = n_images or (32 if quick else 192)
    requests = requests or n_images
    repeats = repeats or (1 if quick else 5)
    city = bench_city()
    paths = city_images(city, n_images)
    bodies = [multipart(Path(p).read_bytes()) for p in paths]
    model_dir = resolve_model_dir(None)
    model = load_model(model_dir, device="cpu")
    server = ServeProcess(city / "images", model_dir)
    all_latencies, failures = [], []
    try:
        def serve_round():
            latencies, failed = load(server.port, bodies, requests)
            all_latencies.append(latencies)
            failures.extend(failed)

        def predict_round():
            df = model.predict(paths, batch_size=64, progress=False)
            assert len(df) == len(paths)

        # Warm-up: the server's first batches (oneDNN kernels for each batch shape) and the page cache.
        load(server.port, bodies, min(requests, 4 * CLIENTS))
        predict_round()
        # settle: the server's torch threads spin on after a round and would slow predict's next one.
        times = alternate({"serve": serve_round, "predict": predict_round}, repeats=repeats, warmup=0, settle=1.0)
    finally:
        server.stop()
    # The server's last line: "scored N photo(s) in M model call(s)" over its life (warm-up included).
    calls = re.search(r"scored (\d+) photo\(s\) in (\d+) model call", server.log.read_text())
    mean_batch = round(int(calls.group(1)) / max(1, int(calls.group(2))), 1) if calls else None
    kept = [x for round_ in all_latencies for x in round_]
    ratio = paired_ratio(times["serve"], requests, times["predict"], n_images)
    return {
        "title": "Serve throughput (16 concurrent clients on /api/score / predict on the same images)",
        "inputs": {"model": str(model_dir.name), "backbone": model.meta.get("backbone"),
                   "image_size": model.preprocess.input_size, "images": n_images, "requests_per_round": requests,
                   "clients": CLIENTS, "jpeg": "400x300 synthetic street scenes", "repeats": repeats,
                   "server": "perceptions serve, micro-batching (up to 32 uploads per model call, 10 ms wait)",
                   "reference": "PerceptionModel.predict(paths, batch_size=64): predict's pipeline in process"},
        "figures": {"serve": {**rate(times["serve"], requests),
                              "latency_p50_ms": round(1000 * percentile(kept, 50), 1),
                              "latency_p95_ms": round(1000 * percentile(kept, 95), 1),
                              "latency_median_of_rounds_ms": round(
                                  1000 * median([median(r) for r in all_latencies]), 1),
                              "failed_requests": len(failures),
                              "mean_uploads_per_model_call": mean_batch},
                    "predict": rate(times["predict"], n_images)},
        "ratio": ratio,
        "ratio_name": "serve images/s / predict images/s",
        "target": TARGET,
        "verdict": verdict(ratio, TARGET) if not failures else "FAILED REQUESTS",
    }


def section(b: dict) -> list[str]:
    """RESULTS.md's section 9 (benchmarks/run_all.py renders it)."""
    if "figures" not in b:
        return ["## 9. Serving: concurrent uploads against predict", "",
                *([f"**Failed**: {b['error']}"] if b.get("error") else [])]
    i, s, p = b["inputs"], b["figures"]["serve"], b["figures"]["predict"]
    per_call = s.get("mean_uploads_per_model_call")
    return [
        "## 9. Serving: concurrent uploads against predict", "",
        f"{i['clients']} client threads, each on a keep-alive connection, post {i['requests_per_round']} uploads a "
        f"round ({i['jpeg']}) to `perceptions serve` on loopback ({i['backbone']} at {i['image_size']} px; "
        f"{i['server']}); reference: {i['reference']}, on the same {i['images']} files; {i['repeats']} "
        "alternated rounds.", "",
        "| Case | images/s (median) | min | max | p50 latency (ms) | p95 latency (ms) |",
        "|---|---|---|---|---|---|",
        f"| serve, {i['clients']} clients | {s['per_s_median']:.1f} | {s['per_s_min']:.1f} | "
        f"{s['per_s_max']:.1f} | {s['latency_p50_ms']:.0f} | {s['latency_p95_ms']:.0f} |",
        f"| predict (library path) | {p['per_s_median']:.1f} | {p['per_s_min']:.1f} | {p['per_s_max']:.1f} | | |",
        "", f"Ratio **{b['ratio']:.2f}** (target >= {b['target']}); "
            f"{'n/a' if per_call is None else f'{per_call:.1f}'} uploads per model call on average; "
            f"{s['failed_requests']} failed requests."]


if __name__ == "__main__":
    run_as_script(run, __doc__)
