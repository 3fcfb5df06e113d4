"""`python tests/interrupt_driver.py train ...`: the `perceptions` CLI with one pause point, for tests that kill
or interrupt a training process at a chosen moment. It lives in tests/ so the library carries no test hooks.

Environment:
  TEST_MARKER         a file written (with what is paused) when the process reaches the pause point
  TEST_PAUSE_AT_STEP  "EPOCH,STEP": pause after that training step, before the loop checks for a stop request
  TEST_PAUSE_IN_SAVE  "1": pause inside the first write of checkpoints/last.pt, after half of its bytes reached
                      the temp file (fsynced) and before the rename: a kill there is a kill mid-checkpoint-write
The process then waits: SIGKILL ends it; SIGINT (at a step) runs the loop's own handler, which stops the run.
"""
import io
import os
import signal
import sys
import time
from pathlib import Path


def pause(what: str, until=None) -> None:
    """Report the pause point, then wait: for a signal, or (a SIGINT that may arrive before the wait begins)
    until `until()` is true."""
    Path(os.environ["TEST_MARKER"]).write_text(what)
    if until is None:
        signal.pause()
    while until is not None and not until():
        time.sleep(0.01)


def install() -> None:
    at = os.environ.get("TEST_PAUSE_AT_STEP")
    if at:
        from perceptions.train import step

        target = tuple(int(x) for x in at.split(","))
        check = step.StopRequest.__call__

        def check_after_pause(self, epoch, step):
            if (epoch, step) == target:
                pause(f"step {epoch},{step}", until=lambda: self.signalled)
            return check(self, epoch, step)
        step.StopRequest.__call__ = check_after_pause

    if os.environ.get("TEST_PAUSE_IN_SAVE"):
        import torch

        save = torch.save

        def half_save(obj, f, *args, **kwargs):
            if not (isinstance(obj, dict) and "optimizer" in obj):  # best.pt: written whole
                return save(obj, f, *args, **kwargs)
            buf = io.BytesIO()
            save(obj, buf, *args, **kwargs)
            data = buf.getvalue()
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
            pause("save")
            f.write(data[len(data) // 2:])  # only reached if the test lets the process go on
        torch.save = half_save


if __name__ == "__main__":
    install()
    from perceptions.cli import main

    sys.exit(main(sys.argv[1:]))
