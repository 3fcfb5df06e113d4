"""Logs that read well in a file: a training run redirected to a log (as on a cluster) has no carriage return
and a few plain lines per epoch; on a terminal the same run would draw bars. Progress's plain lines say
where a long loop is, with its rate."""
from __future__ import annotations

import logging
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_a_training_run_logged_to_a_file_has_plain_lines(tiny_city, tmp_path):
    log = tmp_path / "train.log"
    cmd = [sys.executable, "-m", "perceptions", "train", "--data", str(tiny_city), "--out", str(tmp_path / "runs"),
           "--image-size", "32", "--freeze-epochs", "1", "--epochs", "2", "--batch-size", "8", "--workers", "0",
           "--device", "cpu"]
    with open(log, "w") as f:  # no --progress flag: the default decides, from stderr not being a terminal
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=600)
    text = log.read_text()
    assert done.returncode == 0, text[-2000:]
    assert "\r" not in text and "\x1b[" not in text, "a bar or a terminal escape reached the log file"
    lines = text.splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 3
    # The run's own lines (folder, data, features, test table...) plus one per epoch: a few per epoch at most.
    assert len(lines) <= 12 + 3 * len(epochs) + 10, text


def test_plain_progress_lines_every_interval(caplog):
    from perceptions.progress import Progress

    caplog.set_level(logging.INFO, logger="perceptions")
    with Progress(10, "predict", unit="img", enabled=False, every_s=0.0) as p:
        for _ in range(10):
            p.update(1, loss=0.5)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10 and lines[-1].startswith("predict: 10/10 img (") and "loss 0.5" in lines[-1]
    caplog.clear()
    with Progress(10, "predict", enabled=False, every_s=3600.0) as p:  # nothing before the interval is up
        p.update(10)
    assert caplog.records == []
    with Progress(10, "predict", enabled=False, quiet=True, every_s=0.0) as p:
        p.update(10)
    assert caplog.records == []
