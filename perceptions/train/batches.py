"""What one training epoch iterates over, as batches in a seeded order that depends only on (seed, epoch).

Two sources share one batch shape, so the step code has a single path:
  image batch  (x, targets, ok)                                         -> regression
  pair batch   (x_left, x_right, t_left, t_right, study, left_wins, ok) -> ranking (+ regression with 'both')
`FeatureBatches` serves cached backbone features (frozen-backbone epochs); `ImageBatches` serves augmented
images through a DataLoader. Every image's augmentation is seeded by (seed, epoch, position), so an epoch is
the same whatever the number of workers, and a run resumed in the middle of an epoch sees the same batches.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from perceptions.data.datasets import CachedFeatures, ImageScores, PairArrays, VotePairs
from perceptions.errors import PerceptionsError


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (SeedSequence spreads nearby inputs apart)."""
    return int(np.random.SeedSequence([int(p) % 2**32 for p in parts]).generate_state(2, np.uint32)
               .astype(np.uint64).dot(np.array([1, 2**31], dtype=np.uint64)))


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng(mix_seed(seed, epoch, 17))


def regression_order(train_rows: np.ndarray, table: pd.DataFrame, studies, oversample: bool, seed: int,
                     epoch: int) -> np.ndarray:
    """Row positions for one regression epoch: a permutation of the training rows, or (oversample) as many
    rows drawn from labels.oversample_index, which balances the rounded 1..10 score bins of every study."""
    rng = epoch_rng(seed, epoch)
    if not oversample:
        return rng.permutation(train_rows)
    from perceptions.data.labels import oversample_index

    index = oversample_index(table.iloc[train_rows].reset_index(drop=True), studies, seed=mix_seed(seed, epoch))
    return train_rows[index[:len(train_rows)]]


def pair_order(pairs: PairArrays, per_epoch: int, seed: int, epoch: int) -> np.ndarray:
    """Vote indices for one epoch: a fresh random subset of `per_epoch` votes (all of them if fewer)."""
    return epoch_rng(seed, epoch).permutation(len(pairs))[:per_epoch]


def chunks(n: int, batch_size: int) -> list[slice]:
    """Batch boundaries; a last batch smaller than half a batch is merged into the one before (a batch of one
    image gives BatchNorm nothing to normalise over, and makes a noisy last step)."""
    full, rest = divmod(n, batch_size)
    edges = [i * batch_size for i in range(full + 1)]
    if rest:
        if rest >= max(1, batch_size // 2) or full == 0:
            edges.append(n)
        else:
            edges[-1] = n
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


class FeatureBatches:
    """Head-only epochs on cached features: index the feature matrix, no images decoded."""

    def __init__(self, features: CachedFeatures, positions: np.ndarray, order_fn, batch_size: int,
                 pairs: PairArrays | None = None, device="cpu"):
        # lookup[table row] = row of the feature matrix (positions[i] is the table row of feature row i).
        self.lookup = np.full(int(np.max(positions)) + 1 if len(positions) else 0, -1, dtype=np.int64)
        self.lookup[np.asarray(positions, dtype=np.int64)] = np.arange(len(positions))
        self.features = features.features.to(device)
        self.targets = features.targets.to(device)
        self.ok = features.ok.to(device)
        self.order_fn, self.batch_size, self.pairs = order_fn, batch_size, pairs
        self.device = device

    def steps_per_epoch(self, epoch: int) -> int:
        return len(chunks(len(self.order_fn(epoch)), self.batch_size))

    def batches(self, epoch: int, start: int = 0):
        order = self.order_fn(epoch)
        for s in chunks(len(order), self.batch_size)[start:]:
            chosen = order[s]
            if self.pairs is None:
                idx = torch.as_tensor(self.lookup[chosen], device=self.device)
                yield self.features[idx], self.targets[idx], self.ok[idx]
            else:
                p = self.pairs.subset(chosen)
                left = torch.as_tensor(self.lookup[p.left], device=self.device)
                right = torch.as_tensor(self.lookup[p.right], device=self.device)
                yield (self.features[left], self.features[right], self.targets[left], self.targets[right],
                       torch.as_tensor(p.study, device=self.device), torch.as_tensor(p.left_wins, device=self.device),
                       self.ok[left] & self.ok[right])


class _Seeded:
    """Dataset view whose keys are (index, seed): the item's random augmentation is drawn from that seed."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        index, seed = key
        torch.manual_seed(seed)
        return self.dataset[index]


class ImageBatches:
    """Fine-tuning epochs: decoded, augmented images (or vote pairs of them) from a DataLoader."""

    def __init__(self, images: ImageScores, order_fn, batch_size: int, seed: int, workers: int = 0,
                 pairs: PairArrays | None = None, pin_memory: bool = False, rank: int = 0, world: int = 1):
        self.dataset = _Seeded(VotePairs(images, pairs) if pairs is not None else images)
        self.order_fn, self.batch_size, self.seed = order_fn, batch_size, seed
        self.workers, self.pin_memory = workers, pin_memory
        # Under torchrun: batch_size is per rank; the order is cut into global batches of batch_size * world
        # and this rank takes positions rank, rank + world, ... of each (see distributed.py).
        self.rank, self.world = rank, world

    def steps_per_epoch(self, epoch: int) -> int:
        return len(chunks(len(self.order_fn(epoch)), self.batch_size * self.world))

    def batches(self, epoch: int, start: int = 0):
        order = self.order_fn(epoch)
        # Augmentation seeded by the global position: the same images see the same crops whatever the world size.
        keyed = [(int(i), mix_seed(self.seed, epoch, pos)) for pos, i in enumerate(order)]
        batch_keys = [keyed[s][self.rank::self.world] for s in chunks(len(order), self.batch_size * self.world)]
        if any(len(k) == 0 for k in batch_keys):
            raise PerceptionsError(f"a global batch has fewer images than the {self.world} processes; use a "
                                   "larger --batch-size or fewer processes")
        batch_keys = batch_keys[start:]
        if not batch_keys:
            return
        loader = DataLoader(self.dataset, batch_sampler=batch_keys, num_workers=self.workers,
                            pin_memory=self.pin_memory, persistent_workers=False,
                            worker_init_fn=None, generator=torch.Generator().manual_seed(mix_seed(self.seed, epoch)))
        yield from loader


def images_per_batch(batch) -> int:
    return len(batch[0]) * (2 if len(batch) == 7 else 1)

