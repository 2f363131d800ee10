"""Normalized text, words and hashed word shingles: what every dedup stage compares.

Documents are compared after normalization (Unicode NFKC, case folded, punctuation and runs of whitespace turned
into one space), so copies that differ only in spacing, case or punctuation count as the same text. Shingles are
the word n-grams of that normal form, each hashed to a 64-bit integer: ``"a b c d"`` with ``n=3`` has the two
shingles ``"a b c"`` and ``"b c d"``. Hashes are stable across processes and machines (CRC-32 of each word, then
a fixed 64-bit mix), unlike Python's salted ``hash()``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib

import numpy as np

WORD = re.compile(r"\w+")
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)  # splitmix64's finalizer
_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier that combines the words of a shingle


def normalize(text: str) -> str:
    """The text that dedup compares: ``normalize("Hello,  WORLD!") == "hello world"``."""
    return " ".join(words(text))


def words(text: str) -> list[str]:
    """Case-folded words (runs of letters, digits, underscores): ``"It's 3 pm" -> ['it', 's', '3', 'pm']``."""
    return WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def text_hash(text: str) -> bytes:
    """A 16-byte fingerprint of the normalized text: equal for copies that differ in case, spacing or punctuation."""
    return hashlib.blake2b(normalize(text).encode(), digest_size=16).digest()


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: spreads nearby integers over all 64 bits (uint64 in, uint64 out)."""
    x = x.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(30)
    x *= _MIX1
    x ^= x >> np.uint64(27)
    x *= _MIX2
    x ^= x >> np.uint64(31)
    return x


def word_hashes(tokens: list[str]) -> np.ndarray:
    """One stable 64-bit hash per word, shape ``(len(tokens),)``."""
    crc = np.fromiter((zlib.crc32(t.encode()) for t in tokens), dtype=np.uint64, count=len(tokens))
    return mix64(crc)


def ngram_hashes(hashes: np.ndarray, n: int) -> np.ndarray:
    """Hashes of the ``len - n + 1`` consecutive n-grams of a sequence of word hashes (order matters).

    ``sum_j h[i + j] * BASE**(n - 1 - j)`` modulo 2**64, then mixed; a text shorter than ``n`` words has one
    shingle, the whole text, so that it still has a signature.
    """
    if n < 1:
        raise ValueError(f"shingle size n must be >= 1, got {n}")
    count = max(len(hashes) - n + 1, 1 if len(hashes) else 0)
    combined = np.zeros(count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(min(n, len(hashes))):
            combined = combined * _BASE + hashes[j : j + count]
    return mix64(combined)


def shingle_hashes(text: str, n: int = 5) -> np.ndarray:
    """The distinct hashed word n-grams of ``text``, sorted, shape ``(S,)`` uint64 (``S`` distinct shingles)."""
    return np.unique(ngram_hashes(word_hashes(words(text)), n))


def shingle_strings(text: str, n: int = 5) -> set[str]:
    """The word n-grams as strings (what ``datasketch`` hashes): ``"a b c d", 3 -> {"a b c", "b c d"}``."""
    tokens = words(text)
    if len(tokens) < n:
        return {" ".join(tokens)} if tokens else set()
    return {" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}
