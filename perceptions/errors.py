"""The one error type users see: a single clear line, no traceback (the CLI prints it and exits 2)."""


class PerceptionsError(Exception):
    """A problem with the user's input or environment, worded for the user."""


class DataError(PerceptionsError):
    """Bad content in a data file: names the file and, where known, the row."""

    def __init__(self, path, problem: str, row: int | None = None):
        where = f"{path}" if row is None else f"{path}, row {row}"
        super().__init__(f"{where}: {problem}")
        self.path, self.row, self.problem = path, row, problem
