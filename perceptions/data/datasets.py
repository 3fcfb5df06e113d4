"""Torch datasets for training: images with score targets, vote pairs, and cached backbone features.

Targets are on the 1..10 scale, one column per study, NaN where an image was not rated in a study (the masked
loss skips those cells). A vote pair is (left row, right row, study column, P(left wins) = 1, 0 or 1/2).
An image that turns out unreadable while training (a JPEG cut off half way, say) does not stop a run of hours:
it comes back as a blank tensor with NaN targets and `ok = False`, so it adds nothing to any loss, and the
loop counts it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from perceptions.data.images import ImageError, load_rgb

# Vote outcomes as the target probability that the left image wins (the ranking loss's target).
OUTCOME_TARGET = {"left": 1.0, "right": 0.0, "equal": 0.5}


class ImageScores(Dataset):
    """(image tensor, targets (S,), ok) for each row; `targets` is an (N, S) float array with NaN holes."""

    def __init__(self, paths, targets: np.ndarray, transform, input_size: int, min_side: int | None = None):
        self.paths = [str(p) for p in paths]
        self.targets = torch.as_tensor(np.asarray(targets, dtype=np.float32))
        if len(self.paths) != len(self.targets):
            raise ValueError("paths and targets differ in length")
        self.transform = transform
        self.input_size = input_size
        self.min_side = min_side or input_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            image = self.transform(load_rgb(self.paths[i], min_side=self.min_side))
            return image, self.targets[i], True
        except ImageError:
            blank = torch.zeros(3, self.input_size, self.input_size)
            return blank, torch.full_like(self.targets[i], float("nan")), False


class VotePairs(Dataset):
    """(left image, right image, left targets, right targets, study index, P(left wins), ok) per vote."""

    def __init__(self, images: ImageScores, pairs: "PairArrays"):
        self.images = images
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        left, right = int(self.pairs.left[i]), int(self.pairs.right[i])
        xl, tl, ok_l = self.images[left]
        xr, tr, ok_r = self.images[right]
        return xl, xr, tl, tr, int(self.pairs.study[i]), float(self.pairs.left_wins[i]), ok_l and ok_r


class PairArrays:
    """Votes as row positions into one image table: left, right, study (column index), left_wins."""

    def __init__(self, left, right, study, left_wins):
        self.left = np.asarray(left, dtype=np.int64)
        self.right = np.asarray(right, dtype=np.int64)
        self.study = np.asarray(study, dtype=np.int64)
        self.left_wins = np.asarray(left_wins, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.left)

    def subset(self, index) -> "PairArrays":
        return PairArrays(self.left[index], self.right[index], self.study[index], self.left_wins[index])


def vote_pairs(votes: pd.DataFrame, location_ids, studies) -> PairArrays:
    """The votes of `studies` whose two images are both among `location_ids` (row i = location_ids[i]).

    Votes of an image with itself are dropped (they carry no information).
    """
    position = pd.Series(np.arange(len(location_ids)), index=pd.Index(np.asarray(location_ids, dtype=str)))
    position = position[~position.index.duplicated()]
    column = {s: j for j, s in enumerate(studies)}
    v = votes[votes["study"].isin(column)]
    left = v["left"].astype(str).map(position)
    right = v["right"].astype(str).map(position)
    target = v["choice"].astype(str).str.lower().map(OUTCOME_TARGET)
    keep = (left.notna() & right.notna() & target.notna()).to_numpy()
    keep = keep & (left.to_numpy() != right.to_numpy())
    return PairArrays(left.to_numpy()[keep].astype(np.int64), right.to_numpy()[keep].astype(np.int64),
                      v["study"].map(column).to_numpy()[keep], target.to_numpy()[keep])


class CachedFeatures:
    """Backbone features of every image, computed once; the frozen-backbone epochs train the head on them.

    features: (N, F) float32; targets: (N, S) with NaN holes; ok: (N,) False for unreadable images.
    """

    def __init__(self, features: torch.Tensor, targets: torch.Tensor, ok: torch.Tensor):
        self.features, self.targets, self.ok = features, targets, ok

    def __len__(self) -> int:
        return len(self.features)

    @classmethod
    @torch.inference_mode()
    def compute(cls, features_fn, loader, device, progress=None) -> "CachedFeatures":
        """Run `features_fn` (images -> pooled features; the backbone in eval mode) once over an unshuffled
        loader of ImageScores. Each batch is copied into one table made at the first batch, not kept as a piece
        to concatenate at the end: small long-lived pieces between the big short-lived activations fragment the
        heap, and the concatenation would need the table's memory twice."""
        n = len(loader.dataset)
        start, feats, targets, oks = 0, None, None, torch.zeros(n, dtype=torch.bool)
        for x, t, ok in loader:
            f = features_fn(x.to(device, non_blocking=True)).float().cpu()
            if feats is None:
                feats = torch.empty((n, f.shape[1]), dtype=torch.float32)
                targets = torch.empty((n, *t.shape[1:]), dtype=t.dtype)
            stop = start + len(f)
            feats[start:stop], targets[start:stop] = f, t
            oks[start:stop] = torch.as_tensor(ok, dtype=torch.bool)
            start = stop
            if progress is not None:
                progress.update(len(x))
        if feats is None:  # an empty loader (torch.cat of no pieces failed here before, too)
            raise ValueError("CachedFeatures.compute: the loader has no images")
        return cls(feats[:start], targets[:start], oks[:start])
