"""Shared fixtures: a tiny synthetic city (48 images, 2 cities) made once per test session.

Any test may read it; none may write into it (copy it first, e.g. with `copy_city`).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

TINY_CITY = {"n_images": 48, "n_cities": 2, "votes_per_image": 6, "seed": 0}


@pytest.fixture(scope="session")
def tiny_city(tmp_path_factory) -> Path:
    """A PP2-layout folder: images/ (48 JPEGs, 400x300), votes.tsv, qscores.tsv, truth.csv. Read-only."""
    from perceptions.data.synthetic import generate_city

    out = tmp_path_factory.mktemp("tiny_city") / "city"
    generate_city(out, **TINY_CITY)
    return out


@pytest.fixture()
def copy_city(tiny_city, tmp_path):
    """A writable copy of the tiny city (for tests that damage or trim it)."""
    def copy(name: str = "city") -> Path:
        target = tmp_path / name
        shutil.copytree(tiny_city, target)
        return target
    return copy
