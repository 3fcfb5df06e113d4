"""Fine-tuning the later stages of the backbone on cached outputs of its frozen early stages.

With `--frozen-stages K` the backbone's first K stages (the stem, then block groups) keep their pretrained
weights and batch-norm statistics, so for a given picture they are a fixed function. With `--augment flip` (or
none) the pictures a run trains on are each image and its mirror image, nothing else: the early stages' output
for both is computed once, in the pass that also gives the head-only phase its pooled features, and every
fine-tuning epoch then runs only the later stages, forward and backward, on the cached maps. No image is
decoded again, and the early stages, which work at the highest resolutions, are never run backward.

The maps are kept as float16 (half the memory of float32; the rounding, ~5e-4 relative, is far below what a
training step changes); the pooled features are computed from the float32 maps. EfficientNet-Lite0 at 128 px:
5 frozen stages cache 80x8x8 values per picture (20 MB per 1,000 images with their mirror images).

What it buys on the demo's city (benchmarks/recipe_validation.json, `cost` and the cached_* variants): a
fine-tuning epoch costs 2.6x less compute with 5 frozen stages, 4.3x with 6; with 5 the validation Spearman
stays within 0.01 of the whole net's, with 6 it falls (Spearman with the truth below the labels' at one of two
seeds), and `boring` loses most in both. With 6 epochs instead of 8, 5 frozen stages are the default recipe
(perceptions/train/config.py): about a third of the whole net's fine-tuning cost.

Batches follow `ImageBatches` exactly: the same vote (or image) order and batch boundaries, each rank its share
of a global batch under torchrun, and each image's flip drawn from (seed, epoch, position), so a resumed epoch
sees the same batches.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from perceptions import runtime
from perceptions.data.datasets import PairArrays
from perceptions.errors import PerceptionsError
from perceptions.nets.backbones import split_backbone
from perceptions.progress import Progress
from perceptions.train.batches import chunks, mix_seed
from perceptions.train.config import TrainConfig

log = logging.getLogger(__name__)

MAP_DTYPE = torch.float16


def stage_cache_used(config: TrainConfig) -> bool:
    """Whether fine-tuning runs on cached early-stage maps: frozen stages, caching on, an augmentation the
    cache can hold (a crop draws a new picture every epoch), and a fine-tuned backbone at all."""
    return (config.frozen_stage_count > 0 and config.cache_stages and config.augment in ("flip", "none")
            and config.epochs > 0 and config.backbone_lr_mult != 0)


@dataclass
class StageCache:
    """maps: (V, N, C, H, W) float16, the frozen stages' output of each image (V = 1) and of its mirror image
    (V = 2); pooled: (N, F) float32 pooled backbone features of the images as they are; targets (N, S) and ok
    (N,) as ImageScores gives them; rows[i]: the label-table row of item i."""
    maps: torch.Tensor
    pooled: torch.Tensor
    targets: torch.Tensor
    ok: torch.Tensor
    rows: np.ndarray

    @classmethod
    @torch.inference_mode()
    def compute(cls, net, frozen_stages: int, images, rows, flips: bool, device, precision, batch_size: int,
                workers: int = 0, progress: bool | None = None) -> "StageCache":
        """One pass over `images` (an ImageScores with the eval transform, item i = table row rows[i]): the
        first `frozen_stages` stages on each picture (and its mirror image with `flips`), the rest of the
        backbone on the picture itself. Under torchrun each rank computes its share and every rank gets it all."""
        from torch.utils.data import DataLoader

        prefix, suffix, _ = split_backbone(net.backbone, frozen_stages)
        was_training = net.training
        net.eval()
        mine = runtime.shard(images)
        n, start = len(mine), 0
        maps = pooled = targets = None
        oks = torch.zeros(n, dtype=torch.bool)
        loader = DataLoader(mine, batch_size=batch_size, num_workers=workers)
        # Each batch goes straight into tables made at the first batch, maps already (V, N, ...): no pieces to
        # concatenate and transpose at the end, which needed the maps' memory three times over (2 GB of maps
        # for Place Pulse's ~100k training and validation images at 128 px), and no small long-lived pieces
        # between the big activations to fragment the heap (CachedFeatures.compute does the same).
        with Progress(n, "early stages and features", enabled=progress,
                      quiet=not runtime.is_main_process()) as bar:
            for x, t, ok in loader:
                x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                with precision.context():
                    plain = prefix(x)
                    mirrored = [prefix(torch.flip(x, dims=[3]))] if flips else []
                    features = suffix(plain).float().cpu()
                if maps is None:
                    maps = torch.empty((1 + len(mirrored), n, *plain.shape[1:]), dtype=MAP_DTYPE)
                    pooled = torch.empty((n, features.shape[1]), dtype=torch.float32)
                    targets = torch.empty((n, *t.shape[1:]), dtype=t.dtype)
                stop = start + len(x)
                for v, m in enumerate((plain, *mirrored)):
                    maps[v, start:stop] = m.to(MAP_DTYPE).cpu()
                pooled[start:stop], targets[start:stop] = features, t
                oks[start:stop] = torch.as_tensor(ok, dtype=torch.bool)
                start = stop
                bar.update(len(x))
        net.train(was_training)
        if maps is None:
            raise ValueError("StageCache.compute: no images")
        if runtime.is_distributed():  # every rank gets every rank's rows, in order
            maps = runtime.gather_rows(maps.transpose(0, 1).contiguous(), len(rows)).transpose(0, 1).contiguous()
            pooled, targets, oks = (runtime.gather_rows(p, len(rows)) for p in (pooled, targets, oks))
        return cls(maps, pooled, targets, oks, np.asarray(rows))

    @property
    def megabytes(self) -> float:
        return self.maps.numel() * self.maps.element_size() / 2**20


class MapBatches:
    """Fine-tuning epochs on a StageCache: ImageBatches' orders and batch boundaries, each image's view (as it
    is, or mirrored) drawn per position from (seed, epoch)."""

    def __init__(self, cache: StageCache, order_fn, batch_size: int, seed: int, pairs: PairArrays | None = None,
                 device="cpu", rank: int = 0, world: int = 1):
        self.cache, self.order_fn, self.batch_size, self.seed = cache, order_fn, batch_size, seed
        self.pairs, self.device, self.rank, self.world = pairs, device, rank, world
        # lookup[table row] = item of the cache
        self.lookup = np.full(int(np.max(cache.rows)) + 1 if len(cache.rows) else 0, -1, dtype=np.int64)
        self.lookup[cache.rows.astype(np.int64)] = np.arange(len(cache.rows))

    def steps_per_epoch(self, epoch: int) -> int:
        return len(chunks(len(self.order_fn(epoch)), self.batch_size * self.world))

    def _maps(self, view: np.ndarray, item: np.ndarray) -> torch.Tensor:
        if (item < 0).any():
            raise PerceptionsError("a training image is missing from the early-stage cache")
        maps = self.cache.maps[torch.as_tensor(view), torch.as_tensor(item)]
        return maps.to(self.device, dtype=torch.float32)

    def batches(self, epoch: int, start: int = 0):
        order = self.order_fn(epoch)
        views = len(self.cache.maps)
        # one draw per (position, side): the same whatever the number of processes
        view = np.random.default_rng(mix_seed(self.seed, epoch, 29)).integers(0, views, size=(len(order), 2))
        bounds = chunks(len(order), self.batch_size * self.world)
        for s in bounds[start:]:
            positions = np.arange(s.start, s.stop)[self.rank::self.world]
            if len(positions) == 0:
                raise PerceptionsError(f"a global batch has fewer images than the {self.world} processes; use a "
                                       "larger --batch-size or fewer processes")
            chosen = order[positions]
            c = self.cache
            if self.pairs is None:
                item = self.lookup[chosen]
                yield self._maps(view[positions, 0], item), c.targets[item].to(self.device), c.ok[item]
                continue
            p = self.pairs.subset(chosen)
            left, right = self.lookup[p.left], self.lookup[p.right]
            yield (self._maps(view[positions, 0], left), self._maps(view[positions, 1], right),
                   c.targets[left].to(self.device), c.targets[right].to(self.device),
                   torch.as_tensor(p.study, device=self.device), torch.as_tensor(p.left_wins, device=self.device),
                   c.ok[left] & c.ok[right])


class LaterStages(torch.nn.Module):
    """Cached early-stage maps -> scores: the backbone's later stages under the run's precision context, the
    head in fp32 outside it (as NetForward does for whole images). A module, so DDP can wrap it."""

    def __init__(self, net, precision, frozen_stages: int):
        super().__init__()
        self.net, self.precision, self.frozen_stages = net, precision, frozen_stages

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        suffix = split_backbone(self.net.backbone, self.frozen_stages)[1]
        with self.precision.context():
            features = suffix(maps.contiguous(memory_format=torch.channels_last)).float()
        return self.net.head(features)


@torch.inference_mode()
def predict_maps(model: LaterStages, maps: torch.Tensor, device, batch_size: int = 256) -> np.ndarray:
    """(N, S) float64 outputs of the later stages and the head on cached maps (eval mode), unclipped."""
    model.net.eval()
    out = [model(m.to(device, dtype=torch.float32)).float().cpu() for m in maps.split(batch_size)]
    return torch.cat(out).double().numpy() if out else np.zeros((0, len(model.net.studies)))
