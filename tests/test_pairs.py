"""The pair chooser of the vote page: uniform (Place Pulse) and active (TrueSkill) choice."""
from collections import Counter

import numpy as np
import pytest
import trueskill

from perceptions.data import pairs as pairs_module
from perceptions.data.pairs import PairChooser


def ids(n):
    return [f"img{i:06d}" for i in range(n)]


@pytest.mark.parametrize("method", ["random", "active"])
@pytest.mark.parametrize("n", [2, 3, 40, 500])
def test_never_a_self_pair_and_only_known_ids(method, n):
    chooser = PairChooser(ids(n), method=method, seed=1)
    known = set(ids(n))
    for _ in range(300):
        left, right = chooser.next_pair()
        assert left != right and left in known and right in known
        chooser.add_vote(left, right, "left")


@pytest.mark.parametrize("method", ["random", "active"])
def test_every_image_is_reachable(method):
    chooser = PairChooser(ids(300), method=method, seed=2)
    seen = set()
    for _ in range(1500):
        left, right = chooser.next_pair()
        seen.update((left, right))
        chooser.add_vote(left, right, "equal")
    assert seen == set(ids(300))


def test_random_is_roughly_uniform_over_images_and_pairs():
    chooser = PairChooser(ids(10), method="random", seed=3)
    images, pairs, sides = Counter(), Counter(), Counter()
    for _ in range(9000):
        left, right = chooser.next_pair()
        images.update((left, right))
        pairs[frozenset((left, right))] += 1
        sides[left] += 1
    # 18,000 appearances over 10 images (1,800 each, sd ~38); 9,000 pairs over 45 (200 each, sd ~14).
    assert len(images) == 10 and all(1650 < c < 1950 for c in images.values())
    assert len(pairs) == 45 and all(140 < c < 260 for c in pairs.values())
    assert all(780 < c < 1020 for c in sides.values())  # either side equally often


def test_active_pairs_close_means():
    # A hand-made state: 400 images, certain and equally often compared, means spread over 0..80.
    n = 400
    active, uniform = PairChooser(ids(n), "active", seed=4), PairChooser(ids(n), "random", seed=4)
    for chooser in (active, uniform):
        chooser.mu[:] = np.linspace(0, 80, n)
        chooser.sigma[:] = 1.0
        chooser.comparisons[:] = 10
    index = {image_id: i for i, image_id in enumerate(ids(n))}

    def mean_gap(chooser):
        gaps = [abs(chooser.mu[index[a]] - chooser.mu[index[b]]) for a, b in (chooser.next_pair()
                                                                               for _ in range(500))]
        return float(np.mean(gaps))

    # Random pairs differ by ~27 on average; the best of 32 partners is within a few points.
    assert mean_gap(uniform) > 20
    assert mean_gap(active) < 3


def test_active_asks_about_uncertain_and_rarely_compared_images_first():
    n = 1000
    chooser = PairChooser(ids(n), "active", seed=5)
    chooser.sigma[:] = 1.0
    chooser.comparisons[:] = 12
    fresh = set(range(0, n, 50))  # 20 images (2%) never compared, still at the prior's sigma
    for i in fresh:
        chooser.sigma[i], chooser.comparisons[i] = 25 / 3, 0
    hits = 0
    for _ in range(200):
        left, right = chooser.next_pair()
        hits += any(int(x[3:]) in fresh for x in (left, right))
    # A random pair holds one of them 4% of the time; a sample of 32 holds one ~48% of the time.
    assert hits > 70


def test_active_keeps_comparisons_balanced_while_votes_come_in():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=500)
    chooser = PairChooser(ids(500), "active", seed=6)
    for _ in range(1500):  # 6 comparisons per image on average
        left, right = chooser.next_pair()
        a, b = int(left[3:]), int(right[3:])
        chooser.add_vote(left, right, "left" if truth[a] > truth[b] else "right")
    assert chooser.comparisons.min() >= 4 and chooser.comparisons.max() <= 12
    # After those votes the state already ranks the truth well.
    assert np.corrcoef(np.argsort(np.argsort(chooser.mu)), np.argsort(np.argsort(truth)))[0, 1] > 0.8


@pytest.mark.parametrize("method", ["random", "active"])
def test_same_seed_and_votes_give_the_same_pairs(method):
    def run(seed):
        chooser = PairChooser(ids(200), method, seed=seed)
        out = []
        for k in range(200):
            pair = chooser.next_pair()
            out.append(pair)
            chooser.add_vote(*pair, ("left", "right", "equal")[k % 3])
        return out

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_votes_update_trueskill_as_the_trueskill_package_does():
    env = trueskill.TrueSkill(mu=25.0, sigma=25 / 3, beta=25 / 6, tau=25 / 300, draw_probability=0.13)
    ratings = {i: env.create_rating() for i in ids(4)}
    chooser = PairChooser(ids(4), seed=0)
    votes = [("img000000", "img000001", "left"), ("img000002", "img000001", "right"),
             ("img000003", "img000000", "equal"), ("img000002", "img000003", "left")]
    for left, right, choice in votes:
        chooser.add_vote(left, right, choice)
        if choice == "right":
            ratings[right], ratings[left] = trueskill.rate_1vs1(ratings[right], ratings[left], env=env)
        else:
            ratings[left], ratings[right] = trueskill.rate_1vs1(ratings[left], ratings[right],
                                                                drawn=choice == "equal", env=env)
    for i, image_id in enumerate(ids(4)):
        assert chooser.mu[i] == pytest.approx(ratings[image_id].mu, abs=1e-6)
        assert chooser.sigma[i] == pytest.approx(ratings[image_id].sigma, abs=1e-6)
    assert chooser.comparisons.tolist() == [2, 2, 2, 2]


def test_bad_votes_raise_and_change_nothing():
    chooser = PairChooser(ids(3), seed=0)
    for args in (("img000000", "nope", "left"), ("img000000", "img000000", "left"),
                 ("img000000", "img000001", "maybe")):
        with pytest.raises(ValueError):
            chooser.add_vote(*args)
    assert chooser.comparisons.sum() == 0 and (chooser.mu == 25.0).all()
    assert "img000001" in chooser and "nope" not in chooser
    with pytest.raises(ValueError):
        PairChooser(["a"])
    with pytest.raises(ValueError):
        PairChooser(["a", "a", "b"])
    with pytest.raises(ValueError):
        PairChooser(ids(3), method="best")


class _CountingRng:
    """A numpy Generator that counts the random numbers drawn from it."""

    def __init__(self, seed):
        self._rng = np.random.default_rng(seed)
        self.drawn = 0

    def integers(self, high, size=None):
        self.drawn += 1 if size is None else int(np.prod(size))
        return self._rng.integers(high, size=size)

    def random(self, size=None):
        self.drawn += 1 if size is None else int(np.prod(size))
        return self._rng.random(size)


@pytest.mark.parametrize("method", ["random", "active"])
def test_work_per_pair_does_not_grow_with_the_number_of_images(method, monkeypatch):
    scored = []
    real_quality = pairs_module.closeness
    monkeypatch.setattr(pairs_module, "closeness",
                        lambda *a, **k: scored.append(np.size(a[2])) or real_quality(*a, **k))
    drawn = {}
    for n in (1_000, 100_000):
        chooser = PairChooser(ids(n), method, seed=9)
        chooser._rng = _CountingRng(9)
        for _ in range(50):
            left, right = chooser.next_pair()
            chooser.add_vote(left, right, "left")
        drawn[n] = chooser._rng.drawn
    # The same random numbers per pair for 1,000 and 100,000 images: no pass over all of them.
    assert drawn[1_000] == drawn[100_000] <= 50 * (3 * pairs_module.CANDIDATES + 2)
    assert all(size <= pairs_module.CANDIDATES for size in scored)
