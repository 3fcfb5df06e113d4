"""Which two images to show a voter next: Place Pulse's uniform choice, or an active choice from TrueSkill.

One `PairChooser` serves one study (the vote page keeps one per study). It holds the TrueSkill state of the
votes it has been told about (`add_vote`): mu, sigma and the number of comparisons of every image, updated
vote by vote with the project's TrueSkill (perceptions.data.scoring, Place Pulse's parameters), so its state
after a vote file equals `perceptions score`'s TrueSkill of that file read in the same order.

Methods (`next_pair`):
  random  two distinct images drawn uniformly, as the Place Pulse site did.
  active  an informative pair: among `candidates` images drawn at random, the first image is the one with the
          fewest comparisons (then the largest sigma, then chance), so every image keeps getting votes and
          uncertain ones first; its partner is, among another `candidates` random images, the one whose
          outcome TrueSkill finds least predictable: the largest exp(-(mu_a - mu_b)^2 / 2c^2), c^2 = 2 beta^2
          + sigma_a^2 + sigma_b^2, the closeness factor of TrueSkill's match quality (draw chance). The full
          match quality also multiplies by sqrt(2 beta^2 / c^2), which prefers certain partners: in a one-off
          check on 1,000 simulated images (2 seeds) it made a few images hubs (up to 75 comparisons at 8 per
          image on average, against at most 16 with the closeness factor alone) for about the same ranking
          (Spearman with the truth within 0.005 from 3 to 8 votes per image). benchmarks/active_votes.py
          measures what the active choice saves against random pairs.
Each call costs O(candidates), not O(images), so a folder of 110,000 images is as quick as one of 100. Which
image is shown left is a coin flip. The same ids, method, seed and sequence of calls give the same pairs.

Pure numpy; no torch, so the web server can import it cheaply.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from perceptions.data.scoring import PLACE_PULSE_TRUESKILL, TrueSkillParams, trueskill_ratings

METHODS = ("active", "random")
CHOICES = {"left": 0, "right": 1, "equal": 2}
CANDIDATES = 32  # images looked at per call for each side of an active pair


class PairChooser:
    """Chooses the next pair for one study from the votes so far (see the module docstring).

    `add_vote` raises ValueError for an id it was not given, a self-pair or a choice other than
    left/right/equal, and changes nothing then; a caller replaying an old vote file filters unknown ids first
    (`image_id in chooser`)."""

    def __init__(self, image_ids: Sequence[str], method: str = "active", seed: int | None = None,
                 candidates: int = CANDIDATES, params: TrueSkillParams = PLACE_PULSE_TRUESKILL):
        ids = [str(i) for i in image_ids]
        if method not in METHODS:
            raise ValueError(f"unknown pair method {method!r}; expected one of {', '.join(METHODS)}")
        if len(set(ids)) < 2:
            raise ValueError(f"need at least two distinct images to make a pair, got {len(set(ids))}")
        if len(set(ids)) != len(ids):
            raise ValueError("image ids repeat; each image must be listed once")
        if int(candidates) < 1:
            raise ValueError(f"candidates must be at least 1, got {candidates}")
        self.method = method
        self.ids = ids
        self.params = params
        self.candidates = int(candidates)
        self._index = {image_id: i for i, image_id in enumerate(ids)}
        n = len(ids)
        self.mu = np.full(n, float(params.mu))
        self.sigma = np.full(n, float(params.sigma))
        self.comparisons = np.zeros(n, dtype=np.int64)
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, image_id) -> bool:
        return str(image_id) in self._index

    def add_vote(self, left: str, right: str, choice: str) -> None:
        """Update the two images' TrueSkill state with one vote (choice: left, right or equal)."""
        if choice not in CHOICES:
            raise ValueError(f"choice {choice!r} is not left, right or equal")
        unknown = [i for i in (left, right) if str(i) not in self._index]
        if unknown:
            raise ValueError(f"unknown image id {unknown[0]!r}")
        a, b = self._index[str(left)], self._index[str(right)]
        if a == b:
            raise ValueError(f"a vote compares image {left!r} with itself")
        pair = [a, b]
        mu, sigma = trueskill_ratings([0], [1], [CHOICES[choice]], 2, self.params,
                                      start=(self.mu[pair], self.sigma[pair]))
        self.mu[pair], self.sigma[pair] = mu, sigma
        self.comparisons[pair] += 1

    def next_pair(self) -> tuple[str, str]:
        """The ids of the next pair to show, (left, right); never an image with itself."""
        first, second = self._random_pair() if self.method == "random" else self._active_pair()
        if self._rng.random() < 0.5:
            first, second = second, first
        return self.ids[first], self.ids[second]

    def _random_pair(self) -> tuple[int, int]:
        n = len(self.ids)
        first = int(self._rng.integers(n))
        second = int(self._rng.integers(n - 1))
        return first, second + (second >= first)  # uniform over the other n - 1 images

    def _sample(self, exclude: int | None = None) -> np.ndarray:
        """`candidates` random image indices (all of them when there are few), without `exclude`."""
        n = len(self.ids)
        if n <= 2 * self.candidates:
            pool = np.arange(n)
        else:
            pool = self._rng.integers(n, size=self.candidates)
        if exclude is not None:
            pool = pool[pool != exclude]
        return pool

    def _active_pair(self) -> tuple[int, int]:
        pool = self._sample()
        # Fewest comparisons first, then the most uncertain; a random key breaks the remaining ties.
        order = np.lexsort((self._rng.random(len(pool)), -self.sigma[pool], self.comparisons[pool]))
        first = int(pool[order[0]])
        partners = self._sample(exclude=first)
        if len(partners) == 0:  # a sample that held only `first` (possible only with tiny `candidates`)
            return self._random_pair()
        quality = closeness(self.mu[first], self.sigma[first], self.mu[partners], self.sigma[partners],
                            self.params)
        best = np.flatnonzero(quality == quality.max())
        return first, int(partners[best[self._rng.integers(len(best))]])


def closeness(mu_a, sigma_a, mu_b, sigma_b, params: TrueSkillParams = PLACE_PULSE_TRUESKILL):
    """exp(-(mu_a - mu_b)^2 / 2c^2), c^2 = 2 beta^2 + sigma_a^2 + sigma_b^2: 1 for a pair whose outcome TrueSkill
    cannot predict, towards 0 for a foregone one (the closeness factor of TrueSkill's 1-vs-1 match quality).
    Broadcasts over numpy arrays."""
    c2 = 2 * params.beta ** 2 + np.square(sigma_a) + np.square(sigma_b)
    return np.exp(-np.square(np.subtract(mu_a, mu_b)) / (2 * c2))
