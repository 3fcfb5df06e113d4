"""Training survives being killed or interrupted, and runs never overwrite each other.

One training run is interrupted three ways, each in its own `perceptions train` process (tests/interrupt_driver.py
pauses it at an exact point, then the test sends the signal): Ctrl-C in the middle of an epoch, SIGKILL in the
middle of writing checkpoints/last.pt, SIGKILL in the middle of an epoch. After every stop each checkpoint on
disk loads whole, and the run resumed to the end has exactly the metrics of an uninterrupted run (same seed).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from perceptions.cli import main

pytestmark = pytest.mark.slow

DRIVER = Path(__file__).with_name("interrupt_driver.py")
# 24 images of the tiny city at 32 px: 3 training steps per epoch, 1 frozen + 2 fine-tuning epochs.
TRAIN_ARGS = ["--image-size", "32", "--batch-size", "8", "--freeze-epochs", "1", "--epochs", "2",
              "--max-images", "24", "--loss", "regression", "--workers", "0", "--no-progress",
              "--device", "cpu", "--seed", "3"]


class Paused:
    """A `perceptions train` process run through the driver, stopped at its pause point."""

    def __init__(self, tmp_path: Path, args: list[str], **pause: str):
        self.marker = tmp_path / "paused"
        self.marker.unlink(missing_ok=True)
        self.log_path = tmp_path / f"train_{time.monotonic_ns()}.log"
        env = {**os.environ, "TEST_MARKER": str(self.marker), **pause}
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen([sys.executable, str(DRIVER), "train", *args], env=env, stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while not self.marker.exists():
            if self.proc.poll() is not None:
                pytest.fail(f"the run ended (code {self.proc.returncode}) before its pause point:\n{self.output()}")
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"the run never reached its pause point:\n{self.output()}")
            time.sleep(0.05)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=300)


def checkpoint_files(run: Path) -> dict:
    """Every file in run/checkpoints: each .pt must load whole; anything else must be a hidden .tmp file (which
    nothing reads as a checkpoint). Returns {name: loaded state or 'temp'}."""
    from perceptions.train.checkpoint import load_checkpoint

    found = {}
    for path in sorted((run / "checkpoints").iterdir()):
        if path.suffix == ".pt":
            found[path.name] = load_checkpoint(path)  # raises on a partial file
        else:
            assert path.name.startswith(".") and path.name.endswith(".tmp"), f"unexpected file {path.name}"
            found[path.name] = "temp"
    return found


def position(state: dict) -> tuple[int, int]:
    return state["epoch"], state["pos"]


def test_killed_and_interrupted_training_resumes_to_the_uninterrupted_result(tiny_city, tmp_path, capsys):
    reference_out = tmp_path / "reference"
    assert main(["train", "--data", str(tiny_city), "--out", str(reference_out), *TRAIN_ARGS]) == 0
    (reference,) = reference_out.iterdir()
    out = tmp_path / "runs"

    # 1. Ctrl-C after step 1 of epoch 2: saves, says how to resume, exits 130 without a traceback.
    run1 = Paused(tmp_path, ["--data", str(tiny_city), "--out", str(out), *TRAIN_ARGS], TEST_PAUSE_AT_STEP="2,1")
    code = run1.stop(signal.SIGINT)
    text = run1.output()
    (run,) = out.iterdir()
    assert code == 130, text
    assert "Traceback" not in text
    assert f"perceptions train --resume {run}" in [line.strip() for line in text.splitlines()], text
    files = checkpoint_files(run)
    assert position(files["last.pt"]) == (1, 1) and "temp" not in files.values()

    # 2. SIGKILL while last.pt of epoch 2 is half written: the old last.pt stays whole.
    run2 = Paused(tmp_path, ["--resume", str(run)], TEST_PAUSE_IN_SAVE="1")
    temp = list((run / "checkpoints").glob(".last.pt.*.tmp"))
    assert len(temp) == 1 and temp[0].stat().st_size > 0, "the kill must land inside a checkpoint write"
    run2.stop(signal.SIGKILL)
    files = checkpoint_files(run)
    assert position(files["last.pt"]) == (1, 1)

    # 3. SIGKILL after step 1 of epoch 3: epoch 2's last.pt is whole, the dead write's temp file is gone.
    run3 = Paused(tmp_path, ["--resume", str(run)], TEST_PAUSE_AT_STEP="3,1")
    run3.stop(signal.SIGKILL)
    files = checkpoint_files(run)
    assert position(files["last.pt"]) == (2, 0)
    assert "temp" not in files.values(), "a temp file of a killed write must not outlive the next checkpoint"
    assert not (run / "summary.json").exists()

    # 4. Resume to the end: the same numbers as the run nobody interrupted.
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0
    assert "resuming after epoch 2" in capsys.readouterr().err  # the log goes to stderr
    summary, expected = (json.loads((r / "summary.json").read_text()) for r in (run, reference))
    assert summary["test"] == expected["test"]
    metrics, expected_metrics = (pd.read_csv(r / "metrics.csv").drop(columns="seconds") for r in (run, reference))
    assert metrics["epoch"].tolist() == [1, 2, 3]
    pd.testing.assert_frame_equal(metrics, expected_metrics)
    assert not list(run.rglob("*.tmp"))
    checkpoint_files(run)


def test_two_runs_with_the_same_out_get_two_folders(tmp_path):
    from perceptions.train.run_folder import create_run_dir

    first = create_run_dir(tmp_path, "efficientnet_lite0")
    (first / "config.json").write_text("{}")
    second = create_run_dir(tmp_path, "efficientnet_lite0")  # same second, same name
    assert first != second and second.is_dir() and not any(second.iterdir())
    assert (first / "config.json").read_text() == "{}"
