"""Training under `torchrun`: the process group, DDP, and the few collectives the loop needs.

How a run splits over N processes (ranks); with one process every function here is the identity:
- The process group comes from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR...):
  nccl with one GPU per rank (cuda:LOCAL_RANK) on CUDA, gloo on CPU (runtime.init_distributed).
- Batch sizes are per rank: the global batch is batch_size x world size. Each epoch's seeded order (batches.py)
  is cut into global batches and rank r takes positions r, r+N, ... of each, so the ranks see disjoint images
  and together exactly the images one process with the global batch would see, with the same augmentation
  (it is seeded by the image's global position). Dropout masks are seeded by (seed, epoch, step, rank).
- Frozen phase: each rank computes the backbone features of its share of the images and all ranks gather
  them; the head steps on cached features are then replicated on every rank over the whole global batch (they
  cost milliseconds, and need no gradient exchange). The fine-tuning phase starts with DDP, which copies
  rank 0's weights to every rank, so the ranks cannot drift apart.
- Fine-tuning: the whole net in DistributedDataParallel (gradients averaged across ranks during backward).
- Validation and test: each rank predicts every N-th image, predictions are gathered in order, and every rank
  computes the same metrics from the full set: each image is evaluated exactly once.
- Files: rank 0 alone creates the run folder (its path is broadcast), writes checkpoints, metrics, plots,
  the package and summary.json.
"""
from __future__ import annotations

import numpy as np
import torch

from perceptions.errors import PerceptionsError
from perceptions.train.runtime import is_distributed, rank, world_size


def _dist():
    import torch.distributed as dist

    return dist


def barrier() -> None:
    if is_distributed():
        _dist().barrier()


def broadcast(obj):
    """Rank 0's `obj` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    _dist().broadcast_object_list(box, src=0)
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
    if _dist().get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on any (a stop request reaches the ranks at different steps)."""
    if not is_distributed():
        return bool(flag)
    t = torch.tensor([int(bool(flag))], device=_collective_device())
    _dist().all_reduce(t, op=_dist().ReduceOp.MAX)
    return bool(t.item())


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar over ranks (the loss a step reports; also makes a NaN stop every rank)."""
    if not is_distributed():
        return value
    t = value.detach().float().reshape(1).clone()
    _dist().all_reduce(t)
    return t[0] / world_size()


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
    _dist().all_gather_object(parts, part.cpu() if torch.is_tensor(part) else part)
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
