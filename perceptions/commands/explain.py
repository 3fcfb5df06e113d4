"""`perceptions explain` (placeholder until its issue lands)."""
from perceptions.errors import PerceptionsError

HELP = "explain (not built yet)"


def add_arguments(parser):
    pass


def run(args) -> int:
    raise PerceptionsError("'explain' is not built yet")
