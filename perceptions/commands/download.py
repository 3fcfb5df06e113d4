"""`perceptions download` (placeholder until its issue lands)."""
from perceptions.errors import PerceptionsError

HELP = "download (not built yet)"


def add_arguments(parser):
    pass


def run(args) -> int:
    raise PerceptionsError("'download' is not built yet")
