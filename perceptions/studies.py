"""The six Place Pulse 2.0 studies: the one source of truth for names, ids and questions.

Users type and read the short names; the 24-hex study ids appear only where PP2 files carry them.
"""
from __future__ import annotations

from dataclasses import dataclass

from perceptions.errors import PerceptionsError


@dataclass(frozen=True)
class Study:
    name: str
    study_id: str
    question: str


STUDIES: tuple[Study, ...] = (
    Study("safe", "50a68a51fdc9f05596000002", "Which place looks safer?"),
    Study("lively", "50f62c41a84ea7c5fdd2e454", "Which place looks livelier?"),
    Study("beautiful", "5217c351ad93a7d3e7b07a64", "Which place looks more beautiful?"),
    Study("wealthy", "50f62cb7a84ea7c5fdd2e458", "Which place looks wealthier?"),
    Study("boring", "50f62c68a84ea7c5fdd2e456", "Which place looks more boring?"),
    Study("depressing", "50f62ccfa84ea7c5fdd2e459", "Which place looks more depressing?"),
)
STUDY_NAMES: tuple[str, ...] = tuple(s.name for s in STUDIES)

_BY_NAME = {s.name: s for s in STUDIES}
_BY_ID = {s.study_id: s for s in STUDIES}
# Other spellings found in redistributed PP2 files (Kaggle `category`, `study_question` columns).
_ALIASES = {
    "safety": "safe", "safer": "safe", "livelier": "lively", "more beautiful": "beautiful",
    "wealthier": "wealthy", "more boring": "boring", "more depressing": "depressing",
}


def study(key: str) -> Study:
    """Look a study up by short name, alias or PP2 study id; raise a clear error otherwise."""
    k = str(key).strip()
    low = k.lower()
    if k in _BY_ID:
        return _BY_ID[k]
    if low in _BY_NAME:
        return _BY_NAME[low]
    if low in _ALIASES:
        return _BY_NAME[_ALIASES[low]]
    raise PerceptionsError(f"unknown study {key!r}; expected one of {', '.join(STUDY_NAMES)} or a PP2 study id")


def parse_studies(spec: str | list[str] | None) -> list[str]:
    """'all' (or None) -> all six names in canonical order; 'safe,beautiful' -> those, canonical order."""
    if spec is None or spec == "all" or spec == ["all"]:
        return list(STUDY_NAMES)
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = {study(s).name for s in items if str(s).strip()}
    if not names:
        raise PerceptionsError("no study given; use 'all' or names like safe,beautiful")
    return [n for n in STUDY_NAMES if n in names]
