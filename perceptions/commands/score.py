"""`perceptions score` (placeholder until its issue lands)."""
from perceptions.errors import PerceptionsError

HELP = "score (not built yet)"


def add_arguments(parser):
    pass


def run(args) -> int:
    raise PerceptionsError("'score' is not built yet")
