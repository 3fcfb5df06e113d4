"""A micro-batcher: concurrent requests share one model call.

Each request puts its item on a queue and gets a Future. One worker thread takes the first waiting item, then
whatever else arrives within `max_wait_s` (up to `max_batch` items), runs `run_batch` once on all of them and
resolves every Future with its own result (or with the batch's exception). While the model is busy, new
requests pile up on the queue, so under load batches fill without waiting; a lone request waits at most
`max_wait_s` more than it would alone.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import Callable, Sequence

log = logging.getLogger(__name__)

_STOP = object()


class MicroBatcher:
    """`submit(item) -> Future` of `run_batch([item, ...])[i]`; one worker thread, batches of up to max_batch."""

    def __init__(self, run_batch: Callable[[list], Sequence], max_batch: int = 32, max_wait_s: float = 0.01,
                 name: str = "micro-batcher"):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.run_batch, self.max_batch, self.max_wait_s = run_batch, int(max_batch), float(max_wait_s)
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        self.batches = 0  # how many model calls so far, and over how many items (for tests and benchmarks)
        self.items = 0
        # A daemon: a server stopped without close() must not hang on it.
        self._worker = threading.Thread(target=self._loop, name=name, daemon=True)
        self._worker.start()

    def submit(self, item) -> Future:
        future: Future = Future()
        if self._closed:
            future.set_exception(RuntimeError("the scorer is shutting down"))
            return future
        self._queue.put((item, future))
        return future

    def close(self, timeout: float = 10.0) -> None:
        """Finish the batches already queued, then stop the worker."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._worker.join(timeout)

    def _take(self) -> tuple[list, bool]:
        """The next batch: the first item (blocking), then more until max_batch or max_wait_s; and whether the
        stop marker was met."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        batch, deadline = [first], time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:
                remaining = deadline - time.monotonic()
                entry = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if entry is _STOP:
                return batch, True
            batch.append(entry)
        return batch, False

    def _loop(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._take()
            # Futures a client gave up on (cancelled) are not worth a place in the batch.
            batch = [(item, f) for item, f in batch if f.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                results = self.run_batch([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} items")
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the error, the worker lives on
                log.exception("a batch of %d failed", len(batch))
                for _, future in batch:
                    future.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(batch)
            for (_, future), result in zip(batch, results):
                future.set_result(result)
        # Anything submitted in the instant close() ran is answered, never left waiting.
        while True:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                return
            if entry is not _STOP and entry[1].set_running_or_notify_cancel():
                entry[1].set_exception(RuntimeError("the scorer is shutting down"))
