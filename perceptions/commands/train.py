"""`perceptions train` (placeholder until its issue lands)."""
from perceptions.errors import PerceptionsError

HELP = "train (not built yet)"


def add_arguments(parser):
    pass


def run(args) -> int:
    raise PerceptionsError("'train' is not built yet")
