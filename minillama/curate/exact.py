"""Exact dedup: keep the first document of each normalized text, drop every later copy.

A set of 16-byte fingerprints (:func:`~minillama.curate.text.text_hash`) is all the state: memory grows with the
number of distinct documents, not their length. Normalizing first catches the copies web crawls are full of,
the same page with other spacing, capitalization or punctuation.
"""

from __future__ import annotations

from minillama.curate.text import text_hash


class ExactDedup:
    """``is_duplicate(text)`` is False the first time a normalized text is seen, True every later time."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()

    def is_duplicate(self, text: str) -> bool:
        fingerprint = text_hash(text)
        if fingerprint in self.seen:
            return True
        self.seen.add(fingerprint)
        return False
