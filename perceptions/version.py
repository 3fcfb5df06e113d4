"""The version of perceptions: one source of truth, read by the package, the CLI and every file it writes."""

__version__ = "0.1.0"
