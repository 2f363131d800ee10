"""Bootstrap intervals against the binomial formula and scipy's bootstrap; spread and paired differences by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from minillama.evaluate.noise import bootstrap_interval, paired_bootstrap, spread


def test_interval_of_an_accuracy_matches_the_normal_approximation():
    values = np.array([1] * 60 + [0] * 40)
    low, high = bootstrap_interval(values, seed=0)
    half = 1.96 * math.sqrt(0.6 * 0.4 / 100)
    assert low == pytest.approx(0.6 - half, abs=0.015)
    assert high == pytest.approx(0.6 + half, abs=0.015)


def test_matches_scipy_percentile_bootstrap():
    stats = pytest.importorskip("scipy.stats")
    values = np.random.default_rng(1).random(200)
    ours = bootstrap_interval(values, n_resamples=5_000, seed=3)
    theirs = stats.bootstrap((values,), np.mean, n_resamples=5_000, method="percentile", random_state=4)
    assert ours == pytest.approx(tuple(theirs.confidence_interval), abs=0.01)


def test_deterministic_and_validated():
    values = [0, 1, 1, 0, 1]
    assert bootstrap_interval(values, seed=7) == bootstrap_interval(values, seed=7)
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_interval([])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_interval(values, confidence=95)


def test_paired_difference_and_spread():
    a, b = [1, 1, 0, 1], [1, 0, 0, 1]
    mean, low, high = paired_bootstrap(a, b)
    assert mean == 0.25 and 0 <= low <= mean <= high <= 1
    assert paired_bootstrap(a, a) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="same items"):
        paired_bootstrap(a, b[:3])
    s = spread([0.30, 0.32, 0.28])
    assert s["mean"] == pytest.approx(0.30) and s["std"] == pytest.approx(0.02) and s["n"] == 3
