"""Scores and heat maps for uploaded photos: the loaded model behind a micro-batcher, and Grad-CAM.

Scores go through the one inference path (`PerceptionModel.score_batch` and `deciles`, what `perceptions
predict` runs): the upload is decoded and cropped by predict's own dataset item
(`predict.pipeline.ImageItems`: the project's decoder, then the package's uint8 `crop_transform`), the crops
of concurrent requests are stacked as predict stacks a batch (`predict.pipeline.collate_items`), and one model
call scores them all. Heat maps are `predict.explain`'s
`explain_image`, drawn as one overlay picture (`overlay_png`). Grad-CAM hooks a layer of the net and needs
gradients, so it runs on its own copy of the net, one at a time, and never disturbs the batched scoring.
"""
from __future__ import annotations

import base64
import copy
import io
import threading

import numpy as np

from perceptions.serve.batching import MicroBatcher

HEATMAP_MAX_SIDE = 1024  # the page shows the overlay at a few hundred pixels


class Scorer:
    """`prepare(path)` -> a crop tensor; `score(crop)` -> Future of {study: {"score", "decile"}};
    `heatmap_png(path, study)` -> PNG bytes. Thread-safe."""

    def __init__(self, model, max_batch: int = 32, max_wait_s: float = 0.01, max_pixels: int | None = None):
        from PIL import Image

        from perceptions.predict.pipeline import resolve_precision

        self.model = model
        self.precision = resolve_precision(model.device, "auto")
        self.max_pixels = int(max_pixels or Image.MAX_IMAGE_PIXELS)
        self.batcher = MicroBatcher(self._run_batch, max_batch=max_batch, max_wait_s=max_wait_s,
                                    name="serve-scorer")
        self._explainer = None
        self._explain_lock = threading.Lock()

    @property
    def studies(self) -> list[str]:
        return list(self.model.studies)

    def prepare(self, path: str):
        """An upload's temporary file -> the uint8 crop predict's loader makes of the same file (its dataset
        item, `predict.pipeline.ImageItems`, itself); UploadError (400, or 413 for too many pixels) when it
        cannot be decoded."""
        from perceptions.predict.pipeline import ImageItems
        from perceptions.serve.uploads import UploadError

        _, crop, reason = ImageItems([path], self.model.crop_transform, self.model.preprocess.decode_side)[0]
        if crop is None:
            raise UploadError(413 if "decompression bomb" in reason else 400, reason)
        return crop

    def score(self, crop):
        """A Future of {study: {"score": float, "decile": int}} for one crop, scored in a shared batch."""
        return self.batcher.submit(crop)

    def _run_batch(self, crops: list) -> list[dict]:
        from perceptions.predict.pipeline import collate_items

        _, batch, _ = collate_items([(i, crop, "") for i, crop in enumerate(crops)])
        scores = self.model.score_batch(batch, self.precision)
        deciles = self.model.deciles(scores)
        return [{s: {"score": float(scores[i, j]), "decile": int(deciles[i, j])} for j, s in enumerate(self.studies)}
                for i in range(len(crops))]

    def heatmap_png(self, path: str, study: str) -> bytes:
        """Grad-CAM of `study` over the upload at `path` (its temporary file), as PNG bytes."""
        from perceptions.predict.explain import explain_image

        with self._explain_lock:
            explanation = explain_image(self._explain_model(), path, studies=[study])
        return overlay_png(explanation, study)

    def _explain_model(self):
        """The model on a private copy of the net (made once, under the explain lock)."""
        if self._explainer is None:
            from perceptions.predict.model import PerceptionModel

            m = self.model
            self._explainer = PerceptionModel(net=copy.deepcopy(m.net), meta=m.meta, device=m.device, path=m.path)
        return self._explainer

    def close(self) -> None:
        self.batcher.close()


def overlay_png(explanation, study: str, alpha: float = 0.6, max_side: int = HEATMAP_MAX_SIDE) -> bytes:
    """The image with one study's Grad-CAM over it, drawn as `explain.render_explanation` draws a panel (the
    jet colour map, opacity alpha * sqrt(heat), so the picture stays visible where nothing drove the score), as
    a PNG at most `max_side` pixels wide or high."""
    from matplotlib import colormaps
    from PIL import Image

    heat = np.asarray(explanation.heatmaps[study], dtype=np.float64)
    colour = colormaps["jet"](heat)[..., :3]
    opacity = (alpha * np.sqrt(np.clip(heat, 0.0, 1.0)))[..., None]
    picture = np.asarray(explanation.image.convert("RGB"), dtype=np.float64) / 255.0
    blended = picture * (1.0 - opacity) + colour * opacity
    out = Image.fromarray(np.clip(np.rint(blended * 255.0), 0, 255).astype(np.uint8), mode="RGB")
    out.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    out.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
