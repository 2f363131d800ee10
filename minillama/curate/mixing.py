"""The data mix: one training stream drawn from several sources in given proportions, deterministic and resumable.

Llama 3's final pretraining mix was roughly 50% general knowledge, 25% math and reasoning, 17% code and 8%
multilingual tokens (Grattafiori et al. 2024, sec. 3.1.2): small, valuable sources are repeated (several *epochs*)
while large ones are not even read to the end. At every step the mixer takes the next document of the source that
is furthest behind its target share, ``argmax_i(weight_i * (step + 1) - taken_i)`` (close to the rule of
Megatron-LM's blended datasets), so after ``n`` steps each source has given ``weight_i * n`` documents, give or take
one. Each source is read in a fresh seeded permutation per epoch. The whole state is the count taken from each
source: save ``state()``, and ``Mixer(..., state=saved)`` continues the very same stream.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np


class Mixer:
    """Iterate ``(source name, document)`` pairs; ``sources`` maps names to sequences of documents."""

    def __init__(self, sources: Mapping[str, Sequence], weights: Mapping[str, float], seed: int = 0,
                 state: Mapping[str, int] | None = None) -> None:
        if set(sources) != set(weights):
            raise ValueError(f"weights name sources {sorted(weights)}, but the sources are {sorted(sources)}")
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {dict(weights)}")
        empty = [name for name, docs in sources.items() if len(docs) == 0 and weights[name] > 0]
        if empty:
            raise ValueError(f"sources with a positive weight but no documents: {empty}")
        self.names = list(sources)
        self.sources = sources
        total = sum(weights.values())
        self.weights = np.array([weights[name] / total for name in self.names])  # (sources,)
        self.seed = seed
        self.taken = np.array([(state or {}).get(name, 0) for name in self.names], dtype=np.int64)
        self._orders: dict[tuple[int, int], np.ndarray] = {}

    def state(self) -> dict[str, int]:
        """Documents taken from each source so far: everything needed to resume."""
        return {name: int(n) for name, n in zip(self.names, self.taken, strict=True)}

    def epochs(self) -> dict[str, float]:
        """How many times each source has been read: ``taken / len(source)``."""
        return {name: int(n) / len(self.sources[name]) for name, n in zip(self.names, self.taken, strict=True)}

    def _order(self, source: int, epoch: int) -> np.ndarray:
        """The seeded permutation of a source's documents in one epoch (only the current one is kept)."""
        key = (source, epoch)
        if key not in self._orders:
            self._orders = {k: v for k, v in self._orders.items() if k[0] != source}
            rng = np.random.default_rng([self.seed, source, epoch])
            self._orders[key] = rng.permutation(len(self.sources[self.names[source]]))
        return self._orders[key]

    def __iter__(self) -> Iterator[tuple[str, object]]:
        while True:
            step = int(self.taken.sum())
            source = int(np.argmax(self.weights * (step + 1) - self.taken))
            size = len(self.sources[self.names[source]])
            epoch, position = divmod(int(self.taken[source]), size)
            self.taken[source] += 1
            yield self.names[source], self.sources[self.names[source]][int(self._order(source, epoch)[position])]
