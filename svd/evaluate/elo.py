"""Elo ratings from pairwise human votes, as the paper ranked its models (App. E; svd-reference.md
section 4): every model starts at 1000, a vote moves both ratings by K = 1 times the surprise,
E = 1 / (1 + 10^((R2 - R1) / 400)), and since Elo depends on the order of the votes, the ranking is
the mean over 1000 random orderings (a bootstrap), with the 2.5 and 97.5 percentiles beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

START, K = 1000.0, 1.0
SCORE = {"left": 1.0, "right": 0.0, "tie": 0.5}  # the left model's score for each outcome


@dataclass(frozen=True)
class Vote:
    left: str  # model shown on the left
    right: str
    winner: str  # left | right | tie


@dataclass(frozen=True)
class Rating:
    model: str
    elo: float  # mean over the orderings
    low: float  # 2.5th percentile
    high: float  # 97.5th percentile
    votes: int


def elo(votes: list[Vote], models: list[str], k: float = K) -> dict[str, float]:
    """Ratings after the votes, in their order."""
    r = dict.fromkeys(models, START)
    for v in votes:
        expected = 1 / (1 + 10 ** ((r[v.right] - r[v.left]) / 400))
        delta = k * (SCORE[v.winner] - expected)
        r[v.left] += delta
        r[v.right] -= delta
    return r


def ranking(votes: list[Vote], models: list[str], rounds: int = 1000, seed: int = 0) -> list[Rating]:
    """Models by mean Elo over `rounds` random orderings of the votes, best first."""
    rng = np.random.default_rng(seed)
    runs = np.empty((rounds, len(models)))
    for k in range(rounds):  # one ordering per round, every model's rating from it
        r = elo([votes[i] for i in rng.permutation(len(votes))], models)
        runs[k] = [r[m] for m in models]
    counts = {m: sum(m in (v.left, v.right) for v in votes) for m in models}
    low, high = np.percentile(runs, [2.5, 97.5], axis=0)
    rated = [
        Rating(m, float(runs[:, j].mean()), float(low[j]), float(high[j]), counts[m])
        for j, m in enumerate(models)
    ]
    return sorted(rated, key=lambda x: (-x.elo, x.model))
