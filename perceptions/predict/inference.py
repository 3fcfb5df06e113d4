"""The one inference path: decoded image batches -> head outputs -> 1..10 scores and deciles.

Training's validation and test, `evaluate`, `predict` and `explain` all run a net through `NetForward`, and turn
its outputs into scores and deciles with `to_scores` and `to_deciles`, so a score means the same thing wherever
it was computed. `PredictionDeciles` holds decile edges fitted on a model's own training-split predictions (what a
package's predicted deciles use when it has them).
"""
from __future__ import annotations

import numpy as np
import torch

from perceptions.errors import PerceptionsError

SCORE_DECIMALS = 4  # the 1..10 scale to 1e-4: finer than bf16 resolves, and stable across batch shapes
SCORE_LOW, SCORE_HIGH = 1.0, 10.0


class NetForward(torch.nn.Module):
    """A PerceptionNet run the one way: input in channels_last, the backbone under the runtime's precision
    context (bf16/fp16 autocast where it pays, plain fp32 elsewhere), the small head in fp32 outside it, since
    bf16 outputs would round scores to ~1/64 steps on the 1..10 scale.

    normalize: applied to uint8 batches (predict's loader hands over uint8 crops, channels_last, and they are
    normalised a whole batch at once on the device: `data.images.NormalizeUint8`); float batches are taken as
    already normalised. A module, so DDP can wrap it.
    """

    def __init__(self, net, precision, normalize=None):
        super().__init__()
        self.net, self.precision, self.normalize = net, precision, normalize

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, F) pooled backbone features in fp32 (what the frozen phase caches)."""
        if x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if x.dtype == torch.uint8:
            if self.normalize is None:
                raise TypeError("NetForward got uint8 images but no `normalize` (the model's mean and std)")
            x = self.normalize(x)
        with self.precision.context():
            return self.net.features(x).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.head(self.features(x))


def to_scores(outputs) -> np.ndarray:
    """Head outputs (N, S) -> scores on the 1..10 scale: float64, clipped, rounded to SCORE_DECIMALS."""
    outputs = outputs.float().cpu().numpy() if torch.is_tensor(outputs) else np.asarray(outputs)
    return np.round(np.clip(outputs.astype(np.float64), SCORE_LOW, SCORE_HIGH), SCORE_DECIMALS)


def to_deciles(scores: np.ndarray, scaling, studies) -> np.ndarray:
    """(N, S) scores -> (N, S) int64 deciles 1..10 from the edges `scaling` holds (data.labels.Scaling: the
    label edges, or PredictionDeciles: edges fitted on the model's training predictions)."""
    scores = np.asarray(scores, dtype=np.float64).reshape(len(scores), len(studies))
    return np.stack([np.asarray(scaling.decile(scores[:, j], s), dtype=np.int64) for j, s in enumerate(studies)],
                    axis=1) if len(studies) else np.zeros((len(scores), 0), dtype=np.int64)


class PredictionDeciles:
    """Decile edges for predictions, fitted on the model's own predictions on its training split, so a
    predicted decile means what a label decile means (about a tenth of the training images in each).
    Predictions shrink towards the mean: the label edges would leave predicted deciles 1 and 10 nearly empty.

    Same interface and tie rule as data.labels.Scaling.decile (a score equal to an edge goes up; NaN -> 0),
    so `to_deciles(scores, obj, studies)` takes either. Stored in the model package as meta["prediction_deciles"]
    = {"source": ..., "studies": {study: {"decile_edges": 9 floats, "n": images}}}.
    """

    SOURCE = "training-split predictions"

    def __init__(self, edges: dict[str, list[float]], counts: dict[str, int] | None = None):
        self.edges = {str(s): [float(e) for e in v] for s, v in edges.items()}
        self.counts = {str(s): int(n) for s, n in (counts or {}).items()}

    @property
    def studies(self) -> list[str]:
        return list(self.edges)

    @classmethod
    def fit(cls, scores, studies) -> "PredictionDeciles":
        """(N, S) predictions on the 1..10 scale (NaN: left out, e.g. an image unrated for that study) ->
        edges at the 10%..90% quantiles of each study's finite predictions."""
        studies = list(studies)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1, len(studies))
        edges, counts = {}, {}
        for j, s in enumerate(studies):
            col = scores[:, j][np.isfinite(scores[:, j])]
            if col.size == 0:
                raise PerceptionsError(f"no finite predictions to fit decile edges for study {s!r}")
            edges[s] = np.quantile(col, np.arange(1, 10) / 10).tolist()
            counts[s] = int(col.size)
        return cls(edges, counts)

    def decile(self, scores, study: str):
        """Scores -> deciles 1..10 by this study's edges; 0 marks a missing (NaN) score."""
        if study not in self.edges:
            raise PerceptionsError(f"no prediction decile edges for study {study!r}; "
                                   f"fitted: {', '.join(self.edges)}")
        edges = np.asarray(self.edges[study], dtype=float)
        scores = np.asarray(scores, dtype=float)
        out = np.where(np.isnan(scores), 0, np.searchsorted(edges, scores, side="right") + 1).astype(int)
        return int(out) if out.ndim == 0 else out

    def to_dict(self) -> dict:
        return {"source": self.SOURCE,
                "studies": {s: {"decile_edges": list(e), **({"n": self.counts[s]} if s in self.counts else {})}
                            for s, e in self.edges.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "PredictionDeciles":
        """Raises PerceptionsError on anything but {"studies": {study: {"decile_edges": 9 ascending numbers}}}."""
        try:
            edges, counts = {}, {}
            for s, v in d["studies"].items():
                e = [float(x) for x in v["decile_edges"]]
                if len(e) != 9 or not all(np.isfinite(e)) or any(b < a for a, b in zip(e, e[1:])):
                    raise ValueError(f"study {s!r} needs 9 ascending decile edges")
                edges[str(s)] = e
                if "n" in v:
                    counts[str(s)] = int(v["n"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PerceptionsError(f"invalid prediction_deciles in model package: {exc}") from None
        return cls(edges, counts)
