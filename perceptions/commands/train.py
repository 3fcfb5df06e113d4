"""`perceptions train`: fine-tune a pretrained CNN on a PP2-layout folder; one run folder per run."""
from __future__ import annotations

import argparse

HELP = "train a model on images + scores (transfer learning, all studies in one net)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from perceptions.train.config import add_arguments as add_config_arguments

    add_config_arguments(parser)


def run(args) -> int:
    from perceptions.train.config import config_from_args, explicit_overrides, resume_config
    from perceptions.train.loop import train

    if args.resume:
        config = resume_config(args.resume, explicit_overrides(args, add_arguments))
    else:
        config = config_from_args(args)
    train(config)
    return 0
