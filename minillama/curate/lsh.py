"""LSH banding: find the pairs of documents whose MinHash signatures probably agree a lot, without comparing all pairs.

Cut each signature of ``b * r`` values into ``b`` bands of ``r`` rows. Two documents become a *candidate pair* when
all ``r`` rows of at least one band agree. For documents of Jaccard similarity ``s`` this happens with probability

    P(s) = 1 - (1 - s**r)**b

an S-curve that rises steeply around ``(1 / b)**(1 / r)``: more rows per band move the step right (fewer false
positives), more bands move it left (fewer false negatives). Each band is a hash table keyed by the band's bytes,
so a lookup costs ``b`` dictionary probes whatever the number of documents (Leskovec, Rajaraman and Ullman,
*Mining of Massive Datasets*, ch. 3).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable

import numpy as np


def collision_probability(s: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """P(candidate) for Jaccard ``s``: ``s=0.8, bands=20, rows=5`` -> ``1 - (1 - 0.8**5)**20 = 0.9996``."""
    return 1.0 - (1.0 - np.asarray(s, dtype=float) ** rows) ** bands


def s_curve_threshold(bands: int, rows: int) -> float:
    """Approximately where the S-curve is steepest: ``(1 / bands) ** (1 / rows)``."""
    return (1.0 / bands) ** (1.0 / rows)


def optimal_bands_rows(threshold: float, num_perm: int, false_positive_weight: float = 0.5,
                       false_negative_weight: float = 0.5) -> tuple[int, int]:
    """The ``(bands, rows)`` with ``bands * rows <= num_perm`` minimizing the weighted area of mistakes.

    False positives: the area under ``P(s)`` for ``s < threshold``; false negatives: the area above it for
    ``s >= threshold`` (numerical integration over 1,001 points).
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    best, best_error = (1, 1), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            below = np.linspace(0.0, threshold, 1001)
            above = np.linspace(threshold, 1.0, 1001)
            fp = np.trapezoid(collision_probability(below, bands, rows), below)
            fn = np.trapezoid(1.0 - collision_probability(above, bands, rows), above)
            error = false_positive_weight * fp + false_negative_weight * fn
            if error < best_error:
                best, best_error = (bands, rows), error
    return best


class LSHIndex:
    """``bands`` hash tables over slices of ``rows`` signature values; ``query`` returns the keys of candidates."""

    def __init__(self, bands: int, rows: int) -> None:
        if bands < 1 or rows < 1:
            raise ValueError(f"bands and rows must be >= 1, got {bands} and {rows}")
        self.bands, self.rows = bands, rows
        self.tables: list[defaultdict[bytes, list[Hashable]]] = [defaultdict(list) for _ in range(bands)]

    def _band_keys(self, signature: np.ndarray) -> list[bytes]:
        if len(signature) < self.bands * self.rows:
            raise ValueError(f"a signature of {len(signature)} values cannot fill {self.bands} bands x "
                             f"{self.rows} rows; use num_perm >= {self.bands * self.rows}")
        return [signature[i * self.rows : (i + 1) * self.rows].tobytes() for i in range(self.bands)]

    def query(self, signature: np.ndarray) -> set[Hashable]:
        """Keys of the indexed documents that share at least one band with ``signature``."""
        found: set[Hashable] = set()
        for table, band in zip(self.tables, self._band_keys(signature), strict=True):
            found.update(table.get(band, ()))
        return found

    def insert(self, key: Hashable, signature: np.ndarray) -> None:
        for table, band in zip(self.tables, self._band_keys(signature), strict=True):
            table[band].append(key)


def candidate_pairs(signatures: Iterable[tuple[Hashable, np.ndarray]], bands: int, rows: int) -> set[tuple]:
    """All pairs ``(earlier_key, later_key)`` that share a band, in insertion order of the keys."""
    index = LSHIndex(bands, rows)
    pairs = set()
    for key, signature in signatures:
        pairs.update((other, key) for other in index.query(signature))
        index.insert(key, signature)
    return pairs
