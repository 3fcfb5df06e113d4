"""Progress that reads well both on a terminal and in a log file.

On a terminal (stderr is a TTY) a tqdm bar redraws in place. Anywhere else (a SLURM/PBS log, `> log 2>&1`) a
bar would leave one fragment per redraw, so instead one plain line is logged every `every_s` seconds and at the
end: done/total, rate, ETA and the caller's figures (loss...). `enabled` True/False forces either way
(`--progress/--no-progress`); None decides by the terminal.
"""
from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger(__name__)

PLAIN_EVERY_S = 30.0


def bars_wanted(enabled: bool | None) -> bool:
    if enabled is None:
        return sys.stderr.isatty()
    return bool(enabled)


class Progress:
    """`with Progress(total, "epoch 3/8", unit="step") as p: ... p.update(1, loss=0.41)`."""

    def __init__(self, total: int, desc: str, unit: str = "img", enabled: bool | None = None, initial: int = 0,
                 every_s: float = PLAIN_EVERY_S, quiet: bool = False):
        """quiet: no bar and no plain lines (e.g. ranks other than 0, or a step too short to report)."""
        self.total, self.desc, self.unit, self.every_s = int(total or 0), desc, unit, every_s  # 0: unknown
        self.n = self.start = int(initial)
        self.t0 = self.last = time.perf_counter()
        self.postfix: dict = {}
        self.bar = None
        self.plain = not quiet and not bars_wanted(enabled)
        if not quiet and bars_wanted(enabled):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total or None, initial=self.n, desc=desc, unit=unit, leave=False,
                            dynamic_ncols=True, smoothing=0.1, **({"unit_scale": True, "unit_divisor": 1024}
                                                                 if unit == "B" else {}))

    def update(self, n: int = 1, **postfix) -> None:
        self.n += n
        self.postfix.update(postfix)
        if self.bar is not None:
            self.bar.update(n)
            if postfix:  # the bar redraws at most ~10 times a second whatever the step rate
                self.bar.set_postfix(self.postfix, refresh=False)
        elif self.plain and time.perf_counter() - self.last >= self.every_s:
            self.last = time.perf_counter()
            log.info(self.line())

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.t0
        return (self.n - self.start) / elapsed if elapsed > 0 else float("nan")

    def line(self) -> str:
        rate = self.rate()
        left = (self.total - self.n) / rate if rate and rate > 0 and self.total else float("nan")
        eta = f", ETA {_clock(left)}" if left == left and self.n < self.total else ""
        extra = "".join(f", {k} {v:.4g}" if isinstance(v, float) else f", {k} {v}" for k, v in self.postfix.items())
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        return f"{self.desc}: {done} {self.unit} ({rate:.1f} {self.unit}/s{eta}{extra})"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
