"""The benchmark helpers (no benchmark is run here: timings belong in `make bench`, not in tests)."""
from __future__ import annotations

import sys

import pytest

from benchmarks import common
from benchmarks.run_all import markdown, scoring_entry


def test_alternate_interleaves_and_drops_warmup():
    import time

    calls = []

    def slow():
        calls.append("a")
        time.sleep(0.03)
    times = common.alternate({"a": slow, "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]  # order reversed every round
    assert [len(v) for v in times.values()] == [3, 3]
    # each timing belongs to its own case: a's include the sleep, b's do not
    assert min(times["a"]) >= 0.03 > max(times["b"])


def test_rate_and_paired_ratio():
    r = common.rate([1.0, 2.0, 4.0], items=8)
    assert r["per_s_median"] == 4.0 and r["per_s_min"] == 2.0 and r["per_s_max"] == 8.0
    assert r["seconds_median"] == 2.0 and r["runs"] == 3
    # A does 10 items in 1 s, B 10 items in 2 s, each round: A is twice as fast.
    assert common.paired_ratio([1.0, 1.0, 1.0], 10, [2.0, 2.0, 2.0], 10) == 2.0
    assert common.paired_ratio([1.0, 3.0, 1.0], 10, [2.0, 2.0, 2.0], 10) == 2.0  # the median, not the mean


def test_verdict():
    assert common.verdict(0.95, 0.9) == "met"
    assert common.verdict(0.85, 0.9) == "MISSED"
    assert common.verdict(None, 0.9) == "not measured"


def test_peak_rss_sees_the_child_allocation(tmp_path):
    cmd = [sys.executable, "-c", "import time; b = bytearray(120 * 2**20); b[::4096] = b'x' * len(b[::4096]); "
                                 "time.sleep(0.3)"]
    result = common.peak_rss(cmd, log_path=tmp_path / "log.txt", timeout=60)
    assert result["rc"] == 0
    assert result["maxrss_mb"] >= 120
    assert result["tree_peak_mb"] >= 100


def test_peak_rss_reports_a_failing_command(tmp_path):
    with pytest.raises(RuntimeError, match="exited 3"):
        common.peak_rss([sys.executable, "-c", "raise SystemExit(3)"], log_path=tmp_path / "log.txt", timeout=60)


def test_outside_load_reports_shares():
    import time

    with common.OutsideLoad() as load:
        time.sleep(0.2)
    assert 0.0 <= load.result["outside_cpu_share"]
    assert 0.2 <= load.result["wall_s"] < 5  # the block's own wall time


def _fake_report():
    rate = common.rate([1.0, 1.1], 32)
    return {
        "started": "2026-01-01T00:00:00+00:00", "quick": False, "total_seconds": 12.0,
        "load_average_end": [0.1, 0.1, 0.1],
        "machine": {"cpu": "Test CPU", "cores": 2, "torch_threads": 2, "memory_gb": 8.0, "gpu": None,
                    "cpu_native_bf16": True, "train_precision": "bf16", "python": "3.11", "os": "Linux",
                    "torch": "x", "torchvision": "x", "timm": "x", "numpy": "x", "pillow": "x",
                    "load_average": [0.1, 0.1, 0.1]},
        "benchmarks": {
            "train_pipeline": {"title": "Training pipeline efficiency", "ratio": 0.8, "ratio_name": "efficiency",
                               "target": 0.9, "verdict": "MISSED",
                               "inputs": {"backbone": "b", "weights": "w", "image_size": 224, "batch_size": 32,
                                          "precision": "bf16", "images_per_epoch": 32, "jpeg": "j",
                                          "repeats": 2, "default_workers": 0},
                               "figures": {"workers=0": {"pipeline": rate, "bare_step": rate, "loading_only": rate,
                                                         "efficiency": 0.8}},
                               "load": {"wall_s": 5, "outside_cpu_share": 0.5}},
            "scoring": {**scoring_entry({"votes": 10, "images": 5, "studies": 6, "ours_seconds": 1.0,
                                         "package_votes_timed": 10, "package_seconds_on_sample": 2.0,
                                         "package_seconds_extrapolated": 2.0, "speedup": 2.0,
                                         "max_abs_diff_mu": 0.0, "max_abs_diff_sigma": 0.0}),
                        "load": {"wall_s": 1, "outside_cpu_share": 0.0}},
            "loading": {"title": "loading", "error": "RuntimeError: boom", "verdict": "ERROR",
                        "load": {"wall_s": 1, "outside_cpu_share": 0.0}},
        },
    }


def test_markdown_has_summary_ceiling_errors_and_load_flags():
    text = markdown(_fake_report())
    assert "Test CPU, 2 cores" in text
    assert "| 1 | Training pipeline efficiency | efficiency | 0.800 | >= 0.9 | MISSED |" in text
    assert "results identical" in text
    assert "| train, workers=0 (default) |" in text  # the ceiling table
    assert "RuntimeError: boom" in text              # a failed bench says why
    assert "not run" in text                         # benches absent from the report are listed
    assert "train_pipeline | 5 | 0.50 (contaminated)" in text
