"""What every benchmark shares: interleaved timing, medians, the synthetic city it runs on, peak RSS of a
command in a subprocess, and a description of the machine.

On a shared machine absolute times drift with other people's load; a ratio of two things timed in alternation
(A B B A A B ...) in one process does not, much. So every bench times its case and its reference that way and
quotes medians.

    .venv/bin/python -m benchmarks.common rss -- CMD ...   # run CMD, print its peak RSS as JSON (used by
                                                          # bench_memory; the wrapper is a fresh process so
                                                          # RUSAGE_CHILDREN sees CMD's tree alone)
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
WORK = BENCH_DIR / "_work"            # generated data and runs (gitignored)
REPO = BENCH_DIR.parent


# ------------------------------------------------------------------------------------------------ timing

def run_as_script(run, doc: str) -> None:
    """`python -m benchmarks.bench_<name> [--quick]`: run one benchmark and print its figures as JSON."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny inputs, one repetition")
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick), indent=2))


def median(values) -> float:
    return float(statistics.median(values))


def timed(fn):
    """(seconds, result) of one call."""
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def alternate(cases: dict, repeats: int, warmup: int = 1, settle: float = 0.0) -> dict[str, list[float]]:
    """Seconds of each case (a no-argument callable), `repeats` times each, interleaved with the order reversed
    every round (A B, B A, A B ...) so that a burst of outside load falls on every case alike. The first
    `warmup` rounds (allocator, oneDNN kernel selection, page cache) are run but not kept. settle: seconds of
    untimed pause before each case, for cases in other processes whose threads keep spinning for a while after
    their work (OpenMP's spin-wait) and would otherwise take cores from the next case."""
    names = list(cases)
    times = {name: [] for name in names}
    for round_ in range(warmup + repeats):
        for name in (names if round_ % 2 == 0 else names[::-1]):
            time.sleep(settle)
            seconds, _ = timed(cases[name])
            if round_ >= warmup:
                times[name].append(seconds)
    return times


def rate(times: list[float], items: int) -> dict:
    """Throughput summary of repeated timings of `items` items: median seconds and items/s (median, min, max)."""
    per_s = [items / t for t in times]
    return {"items": int(items), "runs": len(times), "seconds_median": round(median(times), 4),
            "per_s_median": round(median(per_s), 2), "per_s_min": round(min(per_s), 2),
            "per_s_max": round(max(per_s), 2)}


def paired_ratio(times_a: list[float], items_a: int, times_b: list[float], items_b: int) -> float:
    """Median over rounds of (throughput of A / throughput of B), the two timed next to each other each round."""
    return round(median([(items_a / ta) / (items_b / tb) for ta, tb in zip(times_a, times_b)]), 3)


def verdict(value: float | None, target: float, higher_is_better: bool = True) -> str:
    if value is None:
        return "not measured"
    met = value >= target if higher_is_better else value <= target
    return "met" if met else "MISSED"


# ------------------------------------------------------------------------------------------------- data

def synthetic_city(name: str, n_images: int, n_cities: int = 4, votes_per_image: int = 6, seed: int = 0) -> Path:
    """A synthetic city under benchmarks/_work/<name>, generated once and reused while its parameters match."""
    from perceptions.data.synthetic import generate_city

    out = WORK / name
    params = {"n_images": n_images, "n_cities": n_cities, "votes_per_image": votes_per_image, "seed": seed}
    marker = WORK / f"{name}.params.json"
    if (out / "qscores.tsv").is_file() and marker.is_file() and json.loads(marker.read_text()) == params:
        return out
    WORK.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    generate_city(out, overwrite=True, **params)
    marker.write_text(json.dumps(params))
    return out


BENCH_CITY_IMAGES = 256


def bench_city() -> Path:
    """The synthetic city the speed benchmarks share: 256 street scenes of 400x300 px (JPEG), 4 cities."""
    return synthetic_city("city", n_images=BENCH_CITY_IMAGES)


def city_images(city: Path, n: int | None = None) -> list[str]:
    paths = sorted(str(p) for p in (city / "images").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return paths[:n] if n else paths


# ------------------------------------------------------------------------------------------------ memory

def peak_rss(cmd: list[str], log_path: Path | None = None, timeout: float | None = None, env=None) -> dict:
    """Run `cmd` under a fresh wrapper process and return its peak memory:
    maxrss_mb   getrusage(RUSAGE_CHILDREN).ru_maxrss: the largest single process of cmd's tree (exact);
    tree_peak_mb the largest sum of RSS over cmd and its descendants (DataLoader workers), sampled every 50 ms.
    cmd's own output goes to `log_path` (or is discarded)."""
    wrapper = [sys.executable, "-m", "benchmarks.common", "rss", "--log", str(log_path or os.devnull), "--", *cmd]
    done = subprocess.run(wrapper, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise RuntimeError(f"rss wrapper failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        tail = Path(log_path).read_text()[-800:] if log_path else ""
        raise RuntimeError(f"{' '.join(cmd)} exited {result['rc']}: {tail}")
    return result


def _rss_main(argv: list[str]) -> int:
    import resource

    import psutil

    log = argv[argv.index("--log") + 1]
    cmd = argv[argv.index("--") + 1:]
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = psutil.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        tree_peak = 0
        while proc.poll() is None:
            total = 0
            try:
                for p in [proc, *proc.children(recursive=True)]:
                    try:
                        total += p.memory_info().rss
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        pass
            except psutil.NoSuchProcess:
                pass
            tree_peak = max(tree_peak, total)
            time.sleep(0.05)
    maxrss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    print(json.dumps({"rc": proc.returncode, "seconds": round(time.perf_counter() - t0, 2),
                      "maxrss_mb": round(maxrss_kb / 1024, 1),
                      "tree_peak_mb": round(max(tree_peak, maxrss_kb * 1024) / 2**20, 1)}))
    return 0


# ------------------------------------------------------------------------------------------------ machine

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


class OutsideLoad:
    """How busy the machine was with OTHER processes while a block ran: CPU seconds used system-wide minus those
    of this process and its waited-for children (DataLoader workers, subprocesses), as a share of wall time x
    cores. Near 0 on a quiet machine; 0.5 means other people's work took half the machine, so absolute figures
    of that block are inflated (ratios, timed in alternation, much less so)."""

    def __enter__(self):
        import psutil

        self._t0 = time.perf_counter()
        self._sys0 = _busy_seconds(psutil.cpu_times())
        self._own0 = _own_cpu_seconds()
        self._load0 = load_average()
        return self

    def __exit__(self, *exc):
        import psutil

        wall = time.perf_counter() - self._t0
        busy = _busy_seconds(psutil.cpu_times()) - self._sys0
        own = _own_cpu_seconds() - self._own0
        cores = psutil.cpu_count() or 1
        self.result = {"wall_s": round(wall, 1), "own_cpu_s": round(own, 1),
                       "outside_cpu_share": round(max(0.0, busy - own) / max(wall * cores, 1e-9), 2),
                       "load_average_before": self._load0, "load_average_after": load_average()}
        return False


def _busy_seconds(times) -> float:
    return sum(getattr(times, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def machine() -> dict:
    """What the figures were measured on."""
    import numpy
    import PIL
    import psutil
    import timm
    import torch
    import torchvision

    from perceptions.runtime import choose_precision, cpu_has_native_bf16

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cores": cores,
        "torch_threads": torch.get_num_threads(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_native_bf16": cpu_has_native_bf16(),
        # what a CPU gets by default: training as TrainConfig.amp_on decides, predict's --precision auto likewise
        "default_precision": choose_precision(torch.device("cpu"), amp=False).name,
        "bf16_autocast_available": choose_precision(torch.device("cpu"), amp=True).name,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
        "load_average": load_average(),
    }


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "rss":
        sys.exit(_rss_main(sys.argv[2:]))
    print(json.dumps(machine(), indent=2))
