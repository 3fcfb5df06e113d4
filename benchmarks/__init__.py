"""Benchmarks of perceptions: each bench_*.py answers one question with a `run() -> dict`; `python -m
benchmarks.run_all` (what `make bench` runs) calls them all and writes results.json and RESULTS.md."""
