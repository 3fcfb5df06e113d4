"""`perceptions demo` (placeholder until its issue lands)."""
from perceptions.errors import PerceptionsError

HELP = "demo (not built yet)"


def add_arguments(parser):
    pass


def run(args) -> int:
    raise PerceptionsError("'demo' is not built yet")
