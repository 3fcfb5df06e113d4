"""`perceptions predict` (placeholder until its issue lands)."""
from perceptions.errors import PerceptionsError

HELP = "predict (not built yet)"


def add_arguments(parser):
    pass


def run(args) -> int:
    raise PerceptionsError("'predict' is not built yet")
