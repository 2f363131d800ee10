"""MinHash (Broder 1997): a short signature whose agreement rate estimates the Jaccard similarity of two sets.

For a random permutation ``pi`` of all shingles, ``P[min pi(A) == min pi(B)] = |A & B| / |A | B|``. With ``k``
independent hash functions standing in for permutations, the fraction of the ``k`` minima that agree is an unbiased
estimate of the Jaccard similarity ``J`` with standard error ``sqrt(J (1 - J) / k)``.

Each hash function is ``h_i(x) = (a_i x + b_i) mod 2**64``, keeping the top 32 bits (multiply-shift hashing,
Dietzfelbinger et al. 1997), applied to the shingles' 64-bit hashes (already well mixed, see
:mod:`minillama.curate.text`). A signature is ``k`` uint32 values; numpy applies all ``k`` functions to a block of
shingles at once, so hashing runs at C speed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from minillama.curate.text import ngram_hashes, word_hashes, words

_BLOCK = 512  # shingles hashed at once: a (block, num_perm) uint64 buffer of 512 KB stays in the CPU's cache


@dataclass(frozen=True)
class MinHasher:
    """``num_perm`` hash functions drawn from ``seed``; two hashers with the same fields give the same signatures."""

    num_perm: int = 128
    seed: int = 0
    shingle_size: int = 5  # words per shingle
    a: np.ndarray = field(init=False, repr=False)  # (num_perm,) odd multipliers
    b: np.ndarray = field(init=False, repr=False)  # (num_perm,) offsets

    def __post_init__(self) -> None:
        if self.num_perm < 1:
            raise ValueError(f"num_perm must be >= 1, got {self.num_perm}")
        rng = np.random.default_rng(self.seed)
        a = rng.integers(0, 2**64, size=self.num_perm, dtype=np.uint64) | np.uint64(1)
        b = rng.integers(0, 2**64, size=self.num_perm, dtype=np.uint64)
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)

    def signature_of_hashes(self, shingles: np.ndarray) -> np.ndarray:
        """Signature of a set given as 64-bit shingle hashes ``(S,)`` -> ``(num_perm,)`` uint32.

        Repeated hashes change nothing (a minimum over a multiset is the minimum over its set). The top 32 bits are
        taken after the minimum: the shift is monotonic, so it commutes with ``min`` and runs once per function. An
        empty set gets the all-ones signature (no shingle ever reaches it), so two empty documents agree.
        """
        minima = np.full(self.num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
        buffer = np.empty((_BLOCK, self.num_perm), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for start in range(0, len(shingles), _BLOCK):
                block = shingles[start : start + _BLOCK, None]  # (S_block, 1)
                hashed = buffer[: len(block)]  # (S_block, num_perm)
                np.multiply(block, self.a[None, :], out=hashed)
                np.add(hashed, self.b[None, :], out=hashed)
                np.minimum(minima, hashed.min(axis=0), out=minima)
        return (minima >> np.uint64(32)).astype(np.uint32)

    def signature(self, text: str) -> np.ndarray:
        """Signature of a document's word shingles, ``(num_perm,)`` uint32."""
        return self.signature_of_hashes(ngram_hashes(word_hashes(words(text)), self.shingle_size))


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """The fraction of agreeing minima: ``[1, 2, 3, 4]`` vs ``[1, 2, 0, 4]`` -> 0.75."""
    if sig_a.shape != sig_b.shape:
        raise ValueError(f"signatures of different lengths: {sig_a.shape} vs {sig_b.shape}")
    return float(np.mean(sig_a == sig_b))


def jaccard(a: set | np.ndarray, b: set | np.ndarray) -> float:
    """Exact Jaccard similarity ``|A & B| / |A | B|`` of two sets or arrays of distinct hashes (1.0 if both empty)."""
    a, b = set(a.tolist() if isinstance(a, np.ndarray) else a), set(b.tolist() if isinstance(b, np.ndarray) else b)
    union = len(a | b)
    return len(a & b) / union if union else 1.0
