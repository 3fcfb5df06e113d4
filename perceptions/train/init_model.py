"""Start a run from an existing model package (`perceptions train --init-model PKG --data DIR`).

The use: a model trained on one crowd (the shipped model, or Place Pulse's) misjudges how another crowd sees its
own streets; a few hundred local votes, collected on `perceptions serve`'s vote page and scored with
`perceptions score`, recalibrate it. The run then
  - takes the package's backbone name and its preprocessing (input size, crop, crop-bottom, mean/std), since
    its weights were tuned on exactly those inputs (`init_config`; a typed --image-size etc. that differs is
    replaced, with a log line);
  - loads its weights, backbone and head, into the new net (`load_init_weights`); the package's studies must
    include the data's (a package of six studies fine-tunes on a folder of safety votes alone: the new net's
    head keeps the safe row), else one error line;
  - trains on the folder's votes and scores as any run does, and exports a normal model package whose scaling
    and predicted-decile edges are fitted on the local training images.

Defaults for this case (`INIT_MODEL_DEFAULTS`, applied by the command to options not typed): the head alone,
on backbone features computed once, with the ranking loss on the raw votes at a small learning rate: a few
hundred votes cannot move a whole backbone far without forgetting what it knew, and one or two votes per image
make a TrueSkill score too noisy to regress on. Chosen on the validation votes of a local city
(benchmarks/local_finetune.py --choose: the shipped model fine-tuned on 300 votes of `synth --crowd local`,
scored on the 516 votes between that city's validation images, never on its test split; benchmarks/
local_finetune.json, "choice"): pairwise accuracy 0.696 before; after 40 head epochs of the ranking loss at a
learning rate of 3e-4 0.707, 1e-3 0.723, 3e-3 0.721, 1e-2 0.712, 3e-2 0.703; ranking plus regression at 1e-2
0.700. The differences are within the noise of 516 votes (+-0.04), so the choice is the best of a flat
optimum. Fine-tuning the backbone too was not tried on this 2-core machine (several times the cost per run).
"""
from __future__ import annotations

import logging

from perceptions.errors import PerceptionsError
from perceptions.train.config import TrainConfig

log = logging.getLogger(__name__)

INIT_MODEL_DEFAULTS = {"freeze_epochs": 40, "epochs": 0, "head_lr_frozen": 1e-3, "loss": "ranking"}


def with_init_defaults(config: TrainConfig, typed) -> TrainConfig:
    """`config` with INIT_MODEL_DEFAULTS for every field not in `typed` (the options the user gave)."""
    if not config.init_model:
        return config
    return config.replace(**{k: v for k, v in INIT_MODEL_DEFAULTS.items() if k not in set(typed)})


def _package(config: TrainConfig):
    from perceptions.predict.model import resolve_model_dir

    return resolve_model_dir(config.init_model)


def init_config(config: TrainConfig) -> TrainConfig:
    """The config with the package's backbone and preprocessing (what its weights expect)."""
    from perceptions.nets.package import preprocess_from_meta, read_package_meta

    folder = _package(config)
    meta = read_package_meta(folder)
    pre = preprocess_from_meta(meta)
    wanted = {"backbone": meta["backbone"], "image_size": pre.input_size, "crop_pct": pre.crop_pct,
              "crop_bottom": pre.crop_bottom}
    changed = {k: v for k, v in wanted.items() if getattr(config, k) != v}
    if changed:
        log.info(f"--init-model {folder}: using the package's " +
                 ", ".join(f"{k} {v} (not {getattr(config, k)})" for k, v in changed.items()))
    return config.replace(**wanted)


def check_studies(package_studies, data_studies, folder) -> list[int]:
    """Row of each data study in the package's head; one error line when the package lacks some."""
    missing = [s for s in data_studies if s not in package_studies]
    if missing:
        raise PerceptionsError(f"--init-model {folder}: the package predicts {', '.join(package_studies)}, not "
                               f"{', '.join(missing)}; train on --studies {','.join(package_studies)} (those the "
                               "data and the package share) or start from another package")
    return [list(package_studies).index(s) for s in data_studies]


def load_init_weights(net, config: TrainConfig):
    """Copy the package's backbone and the head rows of `net.studies` into `net`; returns the package's
    Preprocess. `net` must have been built for the package's backbone (init_config)."""
    import torch

    from perceptions.nets.package import load_package, preprocess_from_meta

    folder = _package(config)
    package_net, meta = load_package(folder, device="cpu")
    rows = check_studies(meta["studies"], net.studies, folder)
    if package_net.num_features != net.num_features:
        raise PerceptionsError(f"--init-model {folder}: its backbone gives {package_net.num_features} features, "
                               f"this net's {net.num_features}")
    net.backbone.load_state_dict(package_net.backbone.state_dict())
    with torch.no_grad():
        index = torch.as_tensor(rows)
        net.head.linear.weight.copy_(package_net.head.linear.weight[index])
        net.head.linear.bias.copy_(package_net.head.linear.bias[index])
    net.weights = f"model package {folder}"  # recorded in the new package: where its starting weights came from
    log.info(f"starting from the model package {folder} ({meta['backbone']}, studies {', '.join(net.studies)})")
    return preprocess_from_meta(meta)
