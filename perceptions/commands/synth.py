"""`perceptions synth` (placeholder until its issue lands)."""
from perceptions.errors import PerceptionsError

HELP = "synth (not built yet)"


def add_arguments(parser):
    pass


def run(args) -> int:
    raise PerceptionsError("'synth' is not built yet")
