"""One pair chooser per study (`perceptions.data.pairs.PairChooser`), each behind its own lock.

At start-up each chooser learns the votes of its study already in the votes file, in the order `perceptions
score` takes them (time order when the file has timestamps), so an active choice carries on from the TrueSkill
state the file holds; every vote the server accepts afterwards is added as it comes.
"""
from __future__ import annotations

import logging
import threading

import pandas as pd

from perceptions.studies import STUDY_NAMES

log = logging.getLogger(__name__)


class StudyPairs:
    """study -> PairChooser over the indexed image ids; `next_pair(study)` and `add_vote(...)` are thread-safe."""

    def __init__(self, image_ids, method: str = "active", existing: pd.DataFrame | None = None,
                 seed: int | None = None, studies=STUDY_NAMES):
        from perceptions.data.pairs import PairChooser

        self.method = method
        self._choosers = {s: PairChooser(image_ids, method=method, seed=None if seed is None else seed + i)
                          for i, s in enumerate(studies)}
        self._locks = {s: threading.Lock() for s in studies}
        self.replayed, self.skipped = self._replay(existing)

    def _replay(self, votes: pd.DataFrame | None) -> tuple[int, int]:
        from perceptions.data.scoring import order_votes

        if votes is None or not len(votes):
            return 0, 0
        votes, _ = order_votes(votes)
        replayed = skipped = 0
        for name, chooser in self._choosers.items():
            mine = votes[votes["study"] == name]
            for left, right, choice in zip(mine["left"].tolist(), mine["right"].tolist(), mine["choice"].tolist()):
                # Real files hold self-votes (Place Pulse 2.0 has some): counted, never fed to a chooser.
                if left in chooser and right in chooser and left != right:
                    chooser.add_vote(left, right, choice)
                    replayed += 1
                else:
                    skipped += 1
        if skipped:
            log.info("%d earlier vote(s) name images that are not in --images, or one image twice: counted, not "
                     "used to choose pairs",
                     skipped)
        return replayed, skipped

    def next_pair(self, study_name: str) -> tuple[str, str]:
        with self._locks[study_name]:
            return self._choosers[study_name].next_pair()

    def add_vote(self, study_name: str, left: str, right: str, choice: str) -> None:
        with self._locks[study_name]:
            self._choosers[study_name].add_vote(left, right, choice)

    def chooser(self, study_name: str):
        """The study's PairChooser (for reading its state; change it only through add_vote)."""
        return self._choosers[study_name]
