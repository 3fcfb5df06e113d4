"""The one training configuration: a typed dataclass, its command-line flags and its JSON form.

Every knob of a run lives here, so `config.json` in a run folder is enough to repeat the run, and `--resume`
can tell whether a folder was made from the same data, backbone and studies.

The defaults are the recipe `make demo` trains with, chosen by measurement on 2 CPU cores: EfficientNet-Lite0
at 128 px keeping the whole picture height (crop_pct 1.0; fine-tuning costs about a third of 224 px per image),
3 head-only epochs on backbone features computed once, then 6 epochs fine-tuning the backbone's later stages at
the full learning rate: its first 5 of 8 stages stay as pretrained and their output for each image and its
mirror image is computed once, in the same pass as the features (perceptions/train/stage_cache.py), with the
batch-norm statistics kept as pretrained (small batches estimate them badly), flips as the only augmentation,
and the regression and ranking losses together. That costs about a third of fine-tuning the whole net for 8
epochs on random crops (the recipe before), which a 2-core machine without native bf16 needed 12 minutes for;
on the validation split it keeps the model's Spearman with the truth above the crowd labels' at both seeds
tried and loses about 0.01 of Spearman and of +-1 decile accuracy (benchmarks/recipe_validation.json:
`defaults` against `whole_net_crop`). fp32 on a CPU (bf16 autocast only pays at 224 px and above, and only with
native bf16), autocast on CUDA. The measurements behind these choices are in benchmarks/RESULTS.md;
`perceptions train --data DIR` with no other flag trains exactly as `make demo` does, and `--frozen-stages 0
--augment crop --epochs 8` trains the whole net as before.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
from dataclasses import dataclass, field

from perceptions.data.images import AUGMENTATIONS
from perceptions.data.labels import SPLIT_METHODS
from perceptions.errors import PerceptionsError

log = logging.getLogger(__name__)

LOSSES = ("regression", "ranking", "both")
DEVICES = ("auto", "cpu", "cuda")
# The recipe's frozen backbone stages, by backbone family: EfficientNet-Lite has 8 (the stem, 7 block groups) and
# the recipe keeps the first 5 as pretrained (perceptions/train/stage_cache.py says why). Other backbones were not
# measured: by default they fine-tune every stage.
RECIPE_FROZEN_STAGES = {"efficientnet_lite": 5}
# Validation metrics a run can select its best epoch on, and whether higher is better.
MONITORS = {"val_spearman": "max", "val_loss": "min", "val_within1": "max", "val_pairwise": "max"}


@dataclass
class TrainConfig:
    data: str
    studies: list[str] = field(default_factory=lambda: ["all"])
    backbone: str = "efficientnet_lite0"
    weights: str = "packaged"            # packaged | hub | none | PATH
    init_model: str | None = None        # start from this model package's weights (train/init_model.py)
    epochs: int = 6                      # fine-tuning epochs (after the frozen ones)
    freeze_epochs: int = 3               # head-only epochs on cached backbone features, run first
    batch_size: int = 32
    lr: float = 1e-3                     # head learning rate; the backbone gets lr * backbone_lr_mult
    backbone_lr_mult: float = 1.0
    head_lr_frozen: float = 3e-3         # learning rate of the frozen-backbone (cached feature) phase
    head_batch_size: int = 256           # batch size of the frozen-backbone phase (features are cheap)
    weight_decay: float = 0.01
    warmup_frac: float = 0.05            # share of the steps of a phase spent warming the lr up
    grad_clip: float = 1.0
    augment: str = "flip"                # fine-tuning augmentation: crop (+flip), flip, none
    freeze_bn: bool = True               # keep the backbone's batch-norm statistics fixed while fine-tuning
    frozen_stages: int | None = None     # leading backbone stages (stem, block groups) left as pretrained;
                                         # None: the recipe's for the backbone (frozen_stage_count)
    cache_stages: bool = True            # compute the frozen stages once per image and flip (augment flip/none)
    image_size: int | None = 128         # None: the size the backbone's weights were trained at
    crop_pct: float | None = 1.0         # share of the shorter side kept by the centre crop; None: the weights'
    crop_bottom: int = 0                 # rows cut off the bottom of every image first (PP2's logo strip: 28)
    split: str = "random"
    val_frac: float = 0.1
    test_frac: float = 0.2
    oversample: bool = False
    loss: str = "both"
    ranking_weight: float = 1.0          # weight of the ranking term when --loss both
    ranking_scale: float = 1.0           # logistic slope per unit of the 1..10 score scale
    score_column: str = "trueskill.score"
    monitor: str = "val_spearman"
    patience: int = 0                    # epochs without improvement before stopping; 0 = never stop early
    seed: int = 0
    device: str = "auto"
    amp: bool | None = None              # mixed precision; None: on CUDA only (see amp_on)
    workers: int | None = None           # data loader processes; None: runtime.default_workers(device)
    out: str = "outputs/runs"
    max_images: int | None = None        # use only the first N labelled images (quick trials)
    resume: str | None = None
    final_test: bool = True              # evaluate on the test split at the end (off: recipe searches on val)
    progress: bool | None = None         # bars on a terminal, plain lines in a log; True/False force either

    def __post_init__(self):
        if isinstance(self.studies, str):
            self.studies = [s for s in self.studies.split(",") if s.strip()]
        # 0 on the command line means "what the backbone's weights say", as None does.
        self.image_size = self.image_size or None
        self.crop_pct = self.crop_pct or None
        self.validate()

    def validate(self) -> None:
        checks = [
            (self.loss in LOSSES, f"--loss must be one of {', '.join(LOSSES)}, not {self.loss!r}"),
            (self.augment in AUGMENTATIONS, f"--augment must be one of {', '.join(AUGMENTATIONS)}"),
            (self.split in SPLIT_METHODS, f"--split must be one of {', '.join(SPLIT_METHODS)}, not {self.split!r}"),
            (self.device in DEVICES, f"--device must be one of {', '.join(DEVICES)}, not {self.device!r}"),
            (self.monitor in MONITORS, f"--monitor must be one of {', '.join(MONITORS)}, not {self.monitor!r}"),
            (self.epochs >= 0 and self.freeze_epochs >= 0, "--epochs and --freeze-epochs must be >= 0"),
            (self.epochs + self.freeze_epochs > 0, "nothing to train: --epochs and --freeze-epochs are both 0"),
            (self.batch_size >= 1 and self.head_batch_size >= 1, "batch sizes must be >= 1"),
            (self.lr > 0 and self.head_lr_frozen > 0, "learning rates must be > 0"),
            (self.backbone_lr_mult >= 0, "--backbone-lr-mult must be >= 0"),
            (0 <= self.val_frac < 1 and 0 <= self.test_frac < 1 and self.val_frac + self.test_frac < 1,
             "--val-frac and --test-frac must be in [0, 1) and leave images to train on"),
            (self.image_size is None or self.image_size >= 16, "--image-size must be >= 16"),
            (self.crop_pct is None or 0 < self.crop_pct <= 1, "--crop-pct must be in (0, 1]"),
            (isinstance(self.crop_bottom, int) and self.crop_bottom >= 0, "--crop-bottom must be >= 0 pixels"),
            (self.max_images is None or self.max_images >= 2, "--max-images must be >= 2"),
            (self.workers is None or self.workers >= 0, "--workers must be >= 0"),
            (self.patience >= 0, "--patience must be >= 0"),
            (self.frozen_stages is None or isinstance(self.frozen_stages, int) and self.frozen_stages >= 0,
             "--frozen-stages must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise PerceptionsError(message)

    @property
    def frozen_stage_count(self) -> int:
        """--frozen-stages as given, or the recipe's for this backbone: the stages it was measured with on the
        EfficientNet-Lite family (RECIPE_FROZEN_STAGES), none for any other backbone (fine-tune it all)."""
        if self.frozen_stages is not None:
            return self.frozen_stages
        return next((k for family, k in RECIPE_FROZEN_STAGES.items() if self.backbone.startswith(family)), 0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        # A run recorded before --frozen-stages existed fine-tuned every stage: resumed, it must go on so.
        d = {"frozen_stages": 0, **d}
        return cls(**{k: v for k, v in d.items() if k in known})

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def phases(self) -> list[tuple[str, int, int]]:
        """(phase, first epoch, last epoch): the head-only epochs, then fine-tuning; epochs count from 1."""
        return [("frozen", 1, self.freeze_epochs),
                ("finetune", self.freeze_epochs + 1, self.freeze_epochs + self.epochs)]

    def amp_on(self, device) -> bool:
        """--amp / --no-amp as typed; by default autocast on CUDA only: on a CPU below 144 px fp32 trains
        faster than bf16 even where bf16 is native (benchmarks/RESULTS.md)."""
        return bool(self.amp) if self.amp is not None else device.type == "cuda"


# What must match between a run folder and a `--resume` request: change any and the old state means nothing.
IDENTITY_FIELDS = ("data", "studies", "backbone", "weights", "init_model", "image_size", "crop_pct", "crop_bottom",
                   "split", "val_frac", "test_frac", "seed", "loss", "score_column", "max_images", "freeze_epochs",
                   "batch_size", "head_batch_size")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field. Defaults come from the dataclass, so they cannot drift; the parser
    itself leaves an option it was not given out of the namespace (argparse.SUPPRESS), so `typed_options` knows
    what the user typed, even a value equal to the default (`--resume RUN --epochs 10` on a 20-epoch run)."""
    d = TrainConfig(data="")

    def a(*flags, default=None, help="", **kw):
        shown = "" if default is None and kw.get("action") is not argparse.BooleanOptionalAction else \
            f" (default: {default})"
        parser.add_argument(*flags, default=argparse.SUPPRESS, help=(help + shown).strip(), **kw)
    a("--data", metavar="DIR",
      help="folder with images/ and qscores.tsv (and votes.tsv, truth.csv if present); required unless --resume")
    a("--studies", default="all", help="'all' or a comma list, e.g. safe,beautiful")
    a("--backbone", default=d.backbone, help="backbone name (see perceptions.nets.backbones)")
    a("--weights", default=d.weights, help="packaged | hub | none | PATH to a weights file")
    a("--init-model", metavar="PKG", help="start from this model package's weights (backbone and head) and "
      "preprocessing instead of ImageNet's, to fine-tune it on a folder of local votes; its studies must include "
      "the data's. Options not typed then take the defaults of perceptions/train/init_model.py "
      "(INIT_MODEL_DEFAULTS: the head alone, on the votes' ranking loss, a short schedule at a small "
      "learning rate)")
    a("--epochs", type=int, default=d.epochs, help="fine-tuning epochs (of the backbone past --frozen-stages)")
    a("--freeze-epochs", type=int, default=d.freeze_epochs,
      help="head-only epochs first, on backbone features computed once")
    a("--batch-size", type=int, default=d.batch_size)
    a("--lr", type=float, default=d.lr, help="peak learning rate of the head when fine-tuning")
    a("--backbone-lr-mult", type=float, default=d.backbone_lr_mult, help="backbone lr = lr * this")
    a("--head-lr-frozen", type=float, default=d.head_lr_frozen, help="peak lr of the frozen-backbone epochs")
    a("--head-batch-size", type=int, default=d.head_batch_size, help="batch size of the frozen-backbone epochs")
    a("--weight-decay", type=float, default=d.weight_decay)
    a("--warmup-frac", type=float, default=d.warmup_frac, help="share of steps spent warming up")
    a("--augment", choices=AUGMENTATIONS, default=d.augment,
      help="fine-tuning augmentation: random resized crop and flip, flip only, or none")
    a("--freeze-bn", action=argparse.BooleanOptionalAction, default=d.freeze_bn,
      help="keep the backbone's batch-norm statistics as pretrained while fine-tuning (small batches)")
    a("--frozen-stages", type=int, default=d.frozen_stages, metavar="K",
      help="fine-tune only the backbone's later stages: its first K (the stem, then block groups; "
      "EfficientNet-Lite0 has 8) stay as pretrained, so backward stops where they end; 0 fine-tunes them all "
      "(default: 5 for the EfficientNet-Lite backbones, the measured recipe; 0 for any other)")
    a("--cache-stages", action=argparse.BooleanOptionalAction, default=d.cache_stages,
      help="with --frozen-stages, compute the frozen stages' output once per image and per flip instead of "
      "every epoch (needs --augment flip or none; with crop they run live, without a backward pass)")
    a("--grad-clip", type=float, default=d.grad_clip, help="max gradient norm (0: no clipping)")
    a("--image-size", type=int, default=d.image_size, help="input size (0: the weights' own)")
    a("--crop-pct", type=float, default=d.crop_pct,
      help="share of the shorter side kept by the centre crop (0: the weights' own; 1.0 keeps the most)")
    a("--crop-bottom", type=int, default=d.crop_bottom, metavar="PIXELS",
      help="cut this many rows off the bottom of every image before the resize, in training, in the run's "
      "evaluation and, through the model package, in predict and evaluate: 28 removes the Google logo strip of "
      "Place Pulse's 400x300 Street View images")
    a("--split", choices=SPLIT_METHODS, default=d.split, help="random images, or whole cities held out")
    a("--val-frac", type=float, default=d.val_frac)
    a("--test-frac", type=float, default=d.test_frac)
    a("--oversample", action=argparse.BooleanOptionalAction, default=d.oversample,
      help="oversample rare score bins in the training split")
    a("--loss", choices=LOSSES, default=d.loss, help="scores, raw votes, or both")
    a("--ranking-weight", type=float, default=d.ranking_weight)
    a("--score-column", default=d.score_column, help="score column of qscores.tsv to learn")
    a("--monitor", choices=tuple(MONITORS), default=d.monitor, help="validation metric for the best model")
    a("--patience", type=int, default=d.patience, help="early stopping patience in epochs (0: off)")
    a("--seed", type=int, default=d.seed)
    a("--device", choices=DEVICES, default=d.device)
    a("--amp", action=argparse.BooleanOptionalAction,
      help="mixed precision (bf16 on CPUs that have it natively, fp16/bf16 on CUDA; default: on CUDA only)")
    a("--workers", type=int,
      help="data loader worker processes (default: 0 on a CPU, where decoding is cheap next to training)")
    a("--out", default=d.out, help="parent folder of run folders")
    a("--max-images", type=int, help="use only a seeded random sample of N labelled images (quick trials)")
    a("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint; options typed "
      "with it apply (epochs, patience, workers, device, progress...) unless they would change what the run is "
      "(data, backbone, image size, studies, split...), which is refused")
    a("--final-test", action=argparse.BooleanOptionalAction, default=d.final_test,
      help="evaluate the best epoch on the test split once, at the end; --no-final-test when comparing "
      "settings, which must be chosen on validation only")
    a("--progress", action=argparse.BooleanOptionalAction,
      help="progress bars (default: on a terminal; in a log file one plain line every 30 s instead)")


def typed_options(args: argparse.Namespace) -> dict:
    """The TrainConfig fields the user typed (add_arguments leaves the others out of the namespace)."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return {k: v for k, v in vars(args).items() if k in known}


def resume_config(run_dir, overrides: dict | None = None) -> TrainConfig:
    """The config a run folder was made with, updated by `overrides` (train() refuses identity changes)."""
    from pathlib import Path

    from perceptions.files import read_json
    from perceptions.train.run_folder import CONFIG_FILE

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise PerceptionsError(f"--resume {run_dir}: not a run folder (no {CONFIG_FILE})")
    saved = read_json(run_dir / CONFIG_FILE).get("config")
    if not isinstance(saved, dict):
        raise PerceptionsError(f"{run_dir / CONFIG_FILE}: holds no training config")
    return TrainConfig.from_dict({**saved, **(overrides or {}), "resume": str(run_dir)})


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """A new run's config (typed options over the defaults), or with --resume the run folder's config with
    the typed options applied (train() refuses those that would change what the run is)."""
    typed = typed_options(args)
    if typed.get("resume"):
        return resume_config(typed["resume"], {k: v for k, v in typed.items() if k != "resume"})
    if not typed.get("data"):
        raise PerceptionsError("--data DIR is required (a folder with images/ and qscores.tsv)")
    return TrainConfig(**typed)
