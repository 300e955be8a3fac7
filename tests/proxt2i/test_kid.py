"""KID (Binkowski et al. 2018): the unbiased cubic-kernel MMD, by hand and over subsets."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from proxt2i.fid import kernel_inception_distance, polynomial_mmd2

X = np.array([[1.0, 0.0], [1.0, 1.0]])
Y = np.array([[-1.0, 0.0], [-1.0, -1.0]])


def test_kid_matches_the_hand_computed_value() -> None:
    # k(a, b) = (a.b / 2 + 1)^3.  Within X: x1.x2 = 1 -> 1.5^3 = 3.375 (off-diagonal mean), and
    # the same within Y.  Across: x1.y1 = -1, x1.y2 = -1, x2.y1 = -1 -> 0.5^3 = 0.125 each,
    # x2.y2 = -2 -> 0.  MMD^2 = 3.375 + 3.375 - 2 * (3 * 0.125) / 4 = 6.5625.
    assert polynomial_mmd2(X, Y) == pytest.approx(6.5625, abs=1e-6)
    # every subset of the full size is the whole set: the mean is exact and the spread 0
    mean, std = kernel_inception_distance(X, Y, subsets=7, subset_size=1000)
    assert mean == pytest.approx(6.5625, abs=1e-6)
    assert std == pytest.approx(0.0, abs=1e-12)


def _mmd2_by_loops(x: np.ndarray, y: np.ndarray) -> float:
    """The estimator written out pair by pair, as a second implementation."""
    m, d = len(x), x.shape[1]

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return float((a @ b / d + 1) ** 3)

    within = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    across = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return within / (m * (m - 1)) - 2 * across / m**2


def test_subsets_average_the_estimator_over_subset_pairs() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)) + 0.7
    assert polynomial_mmd2(x, y) == pytest.approx(_mmd2_by_loops(x, y), rel=1e-12)
    pairs = [
        _mmd2_by_loops(x[list(a)], y[list(b)])
        for a in itertools.combinations(range(4), 2)
        for b in itertools.combinations(range(4), 2)
    ]
    subsets = 4000
    mean, std = kernel_inception_distance(x, y, subsets=subsets, subset_size=2, seed=3)
    # each subset pair is equally likely: the mean converges to their average (seeded: fixed)
    assert abs(mean - np.mean(pairs)) < 3 * np.std(pairs) / np.sqrt(subsets)
    assert std == pytest.approx(np.std(pairs), rel=0.05)
    assert kernel_inception_distance(x, y, subsets, 2, seed=3) == (mean, std)


def test_kid_is_unbiased_near_zero_for_one_distribution_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(600, 16)), rng.normal(size=(600, 16))
    same, _ = kernel_inception_distance(x, y, subsets=20, subset_size=300)
    shifted, _ = kernel_inception_distance(x, y + 0.5, subsets=20, subset_size=300)
    assert abs(same) < 0.01
    assert shifted > 0.9


def test_kid_needs_two_rows_per_side() -> None:
    with pytest.raises(ValueError, match="KID needs at least two images on each side"):
        kernel_inception_distance(X[:1], Y)
