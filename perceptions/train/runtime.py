"""Where a run executes: device, numeric precision, seeds, RNG state and process rank, in one place.

The loop asks this module for a device and a precision context and never branches on either itself
(nanoGPT's habit). Under `torchrun`, init_distributed joins the process group and the device becomes
cuda:LOCAL_RANK; how the loop splits its work over the processes is in distributed.py.
"""
from __future__ import annotations

import ctypes
import os
import random
import sys
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from perceptions.errors import PerceptionsError


def choose_device(spec: str = "auto") -> torch.device:
    """'auto' -> cuda when present, else cpu; 'cuda' without a GPU is a clear error, not a crash later."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda" and not torch.cuda.is_available():
        raise PerceptionsError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if spec not in ("cpu", "cuda"):
        raise PerceptionsError(f"unknown device {spec!r}; use auto, cpu or cuda")
    if spec == "cuda" and is_distributed():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(spec)


def cpu_has_native_bf16() -> bool:
    """True where oneDNN runs bf16 in hardware (AVX-512 BF16 or AMX); emulated bf16 is slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return _cpuinfo_has("avx512_bf16") or _cpuinfo_has("amx_bf16")


def _cpuinfo_has(flag: str) -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any(flag in line.split() for line in f if line.startswith("flags"))
    except OSError:
        return False


@dataclass(frozen=True)
class Precision:
    """How the forward pass runs: `dtype` None means plain fp32."""
    device_type: str
    dtype: torch.dtype | None

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def context(self):
        """The one precision context of the loop: autocast where it pays, nullcontext() elsewhere."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """fp16 needs loss scaling; bf16 and fp32 get a disabled scaler so the step code has one path."""
        return torch.amp.GradScaler(self.device_type, enabled=self.dtype is torch.float16)


def choose_precision(device: torch.device, amp: bool = True) -> Precision:
    if not amp:
        return Precision(device.type, None)
    if device.type == "cuda":
        return Precision("cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    if device.type == "cpu" and cpu_has_native_bf16():
        return Precision("cpu", torch.bfloat16)
    return Precision(device.type, None)


def default_workers(device: torch.device) -> int:
    """Image-decoding processes: none on a CPU (decoding costs ~5% of a CPU training step, and a worker would
    take a core from the net); on a GPU enough to keep it fed."""
    if device.type == "cpu":
        return 0
    # Under torchrun the node's cores are shared by its LOCAL_WORLD_SIZE ranks.
    per_rank = (os.cpu_count() or 2) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(2, min(8, per_rank - 1))


def seed_everything(seed: int) -> None:
    """Seed every generator a run touches (CPU kernels are already deterministic at a fixed thread count)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        # cuDNN's autotuner picks kernels by timing, which changes results from run to run.
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def rng_state() -> dict:
    """All RNG states, as tensors and plain types so `torch.load(weights_only=True)` can read them back."""
    np_state = np.random.get_state()
    state = {
        "python": _python_state_to_plain(random.getstate()),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_python_state_from_plain(state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state_to_plain(s) -> dict:
    version, internal, gauss = s
    return {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss}


def _python_state_from_plain(d) -> tuple:
    return (d["version"], tuple(int(x) for x in d["internal"].tolist()), d["gauss"])


def init_distributed(device_spec: str = "auto") -> bool:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1); True when this call
    created it (the caller then destroys it). nccl with one GPU per rank (cuda:LOCAL_RANK) when the run is on
    CUDA, gloo on CPU. The timeout is long: rank 0 alone writes plots and the package while the others wait."""
    from datetime import timedelta

    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    use_cuda = device_spec in ("auto", "cuda") and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    torch.distributed.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(hours=1))
    return True


def is_distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    return torch.distributed.get_rank() if is_distributed() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Only rank 0 writes files and prints progress."""
    return rank() == 0


def keep_freed_memory() -> None:
    """Let glibc keep freed activation buffers instead of returning them to the OS after every step.

    By default every buffer above 128 KB is mmap-ed and unmapped again, so each training step page-faults its
    activations back in: measured at ~15% of a CPU step's time (mostly system time). Raising malloc's mmap and
    trim thresholds keeps them in the heap. Process-wide and harmless elsewhere; a no-op without glibc.
    """
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
        libc.mallopt(m_mmap_threshold, 1 << 30)
        libc.mallopt(m_trim_threshold, (1 << 31) - 1)
    except (OSError, AttributeError):
        pass


@contextmanager
def cpu_threads(n: int):
    """Run a block with at most `n` CPU threads. Tiny ops (a linear head on cached features) run faster on one
    thread than on several, which wait on each other, badly so when other processes share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(n, before)))
    try:
        yield
    finally:
        torch.set_num_threads(before)
