"""`perceptions evaluate` (placeholder until its issue lands)."""
from perceptions.errors import PerceptionsError

HELP = "evaluate (not built yet)"


def add_arguments(parser):
    pass


def run(args) -> int:
    raise PerceptionsError("'evaluate' is not built yet")
