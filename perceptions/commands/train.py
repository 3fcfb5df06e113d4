"""`perceptions train`: fine-tune a pretrained CNN on a PP2-layout folder; one run folder per run."""
from __future__ import annotations

import argparse

HELP = ("train a model on images + scores (transfer learning, all studies in one net), or fine-tune a model "
        "package on local votes (--init-model)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from perceptions.train.config import add_arguments as add_config_arguments

    add_config_arguments(parser)


def run(args) -> int:
    from perceptions.train.config import config_from_args, typed_options
    from perceptions.train.init_model import with_init_defaults
    from perceptions.train.loop import train

    config = config_from_args(args)
    if not config.resume:  # a resumed run keeps the settings it was made with
        config = with_init_defaults(config, typed_options(args))
    train(config)
    return 0
