"""Where a run executes, in one place shared by train, evaluate and predict: device, numeric precision, seeds
and RNG state, and the processes of a `torchrun` job.

The loop asks this module for a device and a precision context and never branches on either itself
(nanoGPT's habit).

How a training run splits over N processes (ranks); with one process every collective here is the identity:
- The process group comes from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR...):
  nccl with one GPU per rank (cuda:LOCAL_RANK) on CUDA, gloo on CPU (`init_distributed`).
- Batch sizes are per rank: the global batch is batch_size x world size. Each epoch's seeded order
  (train/batches.py) is cut into global batches and rank r takes positions r, r+N, ... of each, so the ranks
  see disjoint images and together exactly the images one process with the global batch would see, with the
  same augmentation (it is seeded by the image's global position). Dropout masks are seeded by
  (seed, epoch, step, rank).
- Frozen phase: each rank computes the backbone features of its share of the images and all ranks gather
  them; the head steps on cached features are then replicated on every rank over the whole global batch (they
  cost milliseconds, and need no gradient exchange). The fine-tuning phase starts with DDP, which copies
  rank 0's weights to every rank, so the ranks cannot drift apart.
- Fine-tuning: the trained part of the net (the whole net, or the stages past --frozen-stages on their cached
  input) in DistributedDataParallel (gradients averaged across ranks during backward).
- Validation and test: each rank predicts every N-th image, predictions are gathered in order, and every rank
  computes the same metrics from the full set: each image is evaluated exactly once.
- Files: rank 0 alone creates the run folder (its path is broadcast), writes checkpoints, metrics, plots,
  the package and summary.json.
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
    """Image-decoding processes: none on a CPU (decoding is cheap next to a CPU training step, and a worker would
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


def init_distributed(device_spec: str = "auto", timeout_h: float = 1.0) -> bool:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1); True when this call
    created it (the caller then destroys it). nccl with one GPU per rank (cuda:LOCAL_RANK) when the run is on
    CUDA, gloo on CPU. The timeout is long: rank 0 alone writes plots and the package while the others wait
    (predict passes longer: its ranks finish their shards at different times)."""
    from datetime import timedelta

    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    use_cuda = device_spec in ("auto", "cuda") and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    torch.distributed.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(hours=timeout_h))
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
    activations back in, a sizeable share of a CPU step's time (mostly system time; benchmarks/RESULTS.md). Raising malloc's mmap and
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


# ------------------------------------------------------------------------------- collectives


def barrier() -> None:
    if is_distributed():
        torch.distributed.barrier()


def broadcast(obj):
    """Rank 0's `obj` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def on_main(fn):
    """Run `fn()` on rank 0 and hand its result to every rank; a PerceptionsError there is raised on all."""
    if not is_distributed():
        return fn()
    result = None
    if rank() == 0:
        try:
            result = ("ok", fn())
        except PerceptionsError as e:
            result = ("error", str(e))  # a plain string travels (DataError does not unpickle)
    kind, value = broadcast(result)
    if kind == "error":
        raise PerceptionsError(value)
    return value


def _collective_device() -> torch.device:
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on any (a stop request reaches the ranks at different steps)."""
    if not is_distributed():
        return bool(flag)
    t = torch.tensor([int(bool(flag))], device=_collective_device())
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of a tensor over ranks (the loss a step reports, which also makes a NaN stop every
    rank; the counts of a global masked mean)."""
    if not is_distributed():
        return value
    t = value.detach().float().reshape(-1).clone().to(_collective_device())
    torch.distributed.all_reduce(t)
    return (t / world_size()).reshape(value.shape)


def shard(dataset):
    """This rank's share of a dataset: items rank, rank + N, ... (all of it in one process)."""
    if not is_distributed() or world_size() == 1:
        return dataset
    from torch.utils.data import Subset

    return Subset(dataset, list(range(rank(), len(dataset), world_size())))


def gather_rows(part, n: int):
    """Inverse of `shard` for per-item results (ndarray or tensor, rows = items): every rank gets all `n` rows
    in the original order."""
    if not is_distributed() or world_size() == 1:
        return part
    w = world_size()
    parts = [None] * w
    torch.distributed.all_gather_object(parts, part.cpu() if torch.is_tensor(part) else part)
    first = parts[0]
    if torch.is_tensor(first):
        out = first.new_empty((n, *first.shape[1:]))
    else:
        out = np.empty((n, *first.shape[1:]), dtype=first.dtype)
    for r, p in enumerate(parts):
        out[r::w] = p
    return out


def predict_sharded(predict_fn, dataset) -> np.ndarray:
    """predict_fn(dataset) -> (n, S) array, computed with each rank predicting its shard."""
    if not is_distributed() or world_size() == 1:
        return predict_fn(dataset)
    return gather_rows(predict_fn(shard(dataset)), len(dataset))


def wrap_ddp(module: torch.nn.Module, device: torch.device):
    """`module` in DistributedDataParallel under torchrun; the module itself otherwise."""
    if not is_distributed():
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
