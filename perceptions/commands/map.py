"""`perceptions map` (placeholder until its issue lands)."""
from perceptions.errors import PerceptionsError

HELP = "map (not built yet)"


def add_arguments(parser):
    pass


def run(args) -> int:
    raise PerceptionsError("'map' is not built yet")
