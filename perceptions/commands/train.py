"""`perceptions train`: fine-tune a pretrained CNN on a PP2-layout folder; one run folder per run."""
from __future__ import annotations

import argparse

HELP = "train a model on images + scores (transfer learning, all studies in one net)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from perceptions.train.config import add_arguments as add_config_arguments

    add_config_arguments(parser)


def run(args) -> int:
    from perceptions.train.config import config_from_args
    from perceptions.train.loop import train

    train(config_from_args(args))
    return 0
