"""The two phases of a run, each as (batch source, validation function, what the batches go through).

frozen:   the backbone's features of the training and validation images are computed once (no augmentation);
          the head trains on them for `freeze_epochs` epochs in seconds.
finetune: the net trains on decoded, augmented images (or vote pairs of them) through the one inference
          path, `NetForward`, wrapped in DDP under torchrun. With `--frozen-stages K` (the recipe's default:
          5 on EfficientNet-Lite) the first K backbone stages stay frozen; when the augmentation allows it
          (flip, the default, or none) their output is cached (stage_cache.py: one pass, shared with the frozen
          phase's features) and the epochs run the later stages only, on the cached maps.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from perceptions import runtime
from perceptions.data.datasets import CachedFeatures, ImageScores
from perceptions.data.images import augmented_transform, eval_transform
from perceptions.errors import PerceptionsError
from perceptions.predict.inference import NetForward
from perceptions.progress import Progress
from perceptions.train.batches import FeatureBatches, ImageBatches, pair_order, regression_order
from perceptions.train.config import TrainConfig
from perceptions.train.prepare import TrainData
from perceptions.train.stage_cache import LaterStages, MapBatches, StageCache, predict_maps, stage_cache_used
from perceptions.train.validation import predict_dataset, predict_features, validation_metrics

log = logging.getLogger(__name__)


def build_phase(phase: str, net, data: TrainData, preprocess, config: TrainConfig, device, precision, timings,
                shared: dict | None = None):
    """(batch source, validation function, what the batches go through) for one phase. `shared` carries the
    early-stage cache from the frozen phase to fine-tuning (computed once per run)."""
    shared = {} if shared is None else shared
    train_rows, val_rows = data.rows("train"), data.rows("val")
    pairs = data.pairs("train") if config.loss != "regression" else None
    if pairs is not None and len(pairs) == 0:
        raise PerceptionsError(f"--loss {config.loss}: no vote has both its images in the training split")

    def images(rows, transform):
        return ImageScores(data.table["path"].to_numpy()[rows], data.targets[rows], transform,
                           preprocess.input_size, preprocess.decode_side)

    def order_fn(per_epoch_pairs):
        if pairs is not None:
            return lambda epoch: pair_order(pairs, per_epoch_pairs, config.seed, epoch)
        return lambda epoch: regression_order(train_rows, data.table, data.studies, config.oversample,
                                              config.seed, epoch)

    def stage_cache() -> StageCache:
        """The early stages' maps of the training and validation images (and their mirror images for
        --augment flip), computed on first use."""
        if "stage_cache" not in shared:
            t0 = time.perf_counter()
            rows = np.concatenate([train_rows, val_rows])
            shared["stage_cache"] = StageCache.compute(
                net, config.frozen_stage_count, images(rows, eval_transform(preprocess)), rows, config.augment == "flip",
                device, precision, max(64, config.batch_size), config.workers, config.progress)
            timings["features_s"] = timings.get("features_s", 0.0) + time.perf_counter() - t0
            log.info(f"early stages ({config.frozen_stage_count}) and features of {len(rows)} images in "
                     f"{time.perf_counter() - t0:.1f} s; cached maps {shared['stage_cache'].megabytes:.0f} MB")
        return shared["stage_cache"]

    if phase == "frozen":
        from torch.utils.data import DataLoader

        rows = np.concatenate([train_rows, val_rows])
        if stage_cache_used(config):  # the pooled features come from the pass that fills the stage cache
            cache = stage_cache()
            cached = CachedFeatures(cache.pooled, cache.targets, cache.ok)
        else:
            t0 = time.perf_counter()
            mine = runtime.shard(images(rows, eval_transform(preprocess)))  # every N-th image under torchrun
            loader = DataLoader(mine, batch_size=max(64, config.batch_size), num_workers=config.workers)
            with Progress(len(mine), "backbone features", enabled=config.progress,
                          quiet=not runtime.is_main_process()) as bar:
                was_training = net.backbone.training
                net.backbone.eval()
                cached = CachedFeatures.compute(NetForward(net, precision).features, loader, device, bar)
                net.backbone.train(was_training)
            if runtime.is_distributed():
                cached = CachedFeatures(*(runtime.gather_rows(t, len(rows))
                                          for t in (cached.features, cached.targets, cached.ok)))
            timings["features_s"] = time.perf_counter() - t0
            log.info(f"backbone features of {len(rows)} images in {timings['features_s']:.1f} s")
        shared["features"] = cached  # train rows first: finish_run may fit the decile edges on them
        # Every rank runs the same head steps on the whole global batch (cheap; no gradient exchange).
        source = FeatureBatches(cached, rows, order_fn(len(pairs) if pairs is not None else 0),
                                config.head_batch_size * runtime.world_size(), pairs, device)
        val_features = cached.features[len(train_rows):].to(device)

        def validate():
            return validation_metrics(predict_features(net, val_features), data, val_rows, config)
        # The head is tiny: fp32 costs nothing here and keeps its small updates exact.
        return source, validate, net.head

    pairs_per_epoch = max(1, len(train_rows) // 2)
    # Batches name rows of the whole label table, so the dataset covers the table; only train rows are drawn.
    all_rows = np.arange(len(data.table))
    # A pair batch holds two images per vote: batch_size // 2 votes keep the images per step at batch_size.
    batch_size = config.batch_size if pairs is None else max(1, config.batch_size // 2)
    if stage_cache_used(config):
        cache = stage_cache()
        source = MapBatches(cache, order_fn(pairs_per_epoch), batch_size, config.seed, pairs, device,
                            rank=runtime.rank(), world=runtime.world_size())
        later = LaterStages(net, precision, config.frozen_stage_count)
        val_maps = cache.maps[0, len(train_rows):]

        def validate_maps():
            return validation_metrics(predict_maps(later, val_maps, device), data, val_rows, config)
        if runtime.is_distributed():
            net.set_backbone_trainable(True, config.frozen_stage_count)  # before DDP collects what to sync
            return source, validate_maps, runtime.wrap_ddp(later, device)
        return source, validate_maps, later
    source = ImageBatches(images(all_rows, augmented_transform(preprocess, config.augment)),
                          order_fn(pairs_per_epoch), batch_size, config.seed, config.workers, pairs,
                          pin_memory=device.type == "cuda", rank=runtime.rank(), world=runtime.world_size())
    val_images = images(val_rows, eval_transform(preprocess))

    def validate():
        return validation_metrics(predict_dataset(net, val_images, config, device, precision, "validate"),
                                  data, val_rows, config)
    if runtime.is_distributed():  # DDP averages the gradients across ranks during backward
        # DDP syncs the parameters that require gradients when it is built: unfreeze the backbone first
        # (make_optimizer, called next, sets the same).
        net.set_backbone_trainable(config.backbone_lr_mult != 0, config.frozen_stage_count)
        return source, validate, runtime.wrap_ddp(NetForward(net, precision), device)
    return source, validate, NetForward(net, precision)
