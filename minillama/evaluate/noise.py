"""How noisy an accuracy is: bootstrap intervals over items, and the spread over seeds and few-shot draws.

An accuracy on ``n`` items is a mean of ``n`` zeros and ones; the items are a sample of the questions the benchmark
could have asked, so the mean moves when the sample does. The percentile bootstrap (Efron 1979) resamples the items
with replacement and reads the interval off the resampled means; for a mean it agrees with the binomial
``p +- 1.96 sqrt(p (1 - p) / n)`` when ``n`` is large. Two models whose intervals overlap widely are not shown to
differ; :func:`paired_bootstrap` asks the sharper question, on the same items, of the difference itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def bootstrap_interval(values: Sequence[float], confidence: float = 0.95, n_resamples: int = 10_000,
                       seed: int = 0) -> tuple[float, float]:
    """The percentile-bootstrap interval of the mean of ``values`` (e.g. per-item correctness, 0 or 1).

    Example: 60 right out of 100 gives about ``(0.50, 0.70)``.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"need a non-empty 1-d sequence of per-item values, got shape {values.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), size=(n_resamples, len(values)))  # (resamples, items)
    means = values[picks].mean(axis=1)  # (resamples,)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def paired_bootstrap(a: Sequence[float], b: Sequence[float], confidence: float = 0.95, n_resamples: int = 10_000,
                     seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``a - b`` over the same items and its bootstrap interval: does model A beat model B?"""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a paired comparison needs the same items: {a.shape} vs {b.shape}")
    low, high = bootstrap_interval(a - b, confidence, n_resamples, seed)
    return float((a - b).mean()), low, high


def spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation, min and max of one number measured several times (seeds, few-shot draws)."""
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "min": float(values.min()), "max": float(values.max()), "n": int(len(values))}
