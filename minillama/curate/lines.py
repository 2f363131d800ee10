"""Line-level dedup across documents: drop the lines that too many documents of a bucket share.

Llama 3 removed lines seen more than 6 times in each bucket of 30M documents (Grattafiori et al. 2024, sec. 3.1.1):
navigation menus, cookie banners and copyright footers that survive document dedup because the page around them
differs. Lines are compared in normal form (:func:`~minillama.curate.text.normalize`); a line counts once per
document. Lines shorter than ``min_chars`` (normalized) are never dropped: short lines such as a speaker's name in a
play or ``else:`` repeat naturally and carry no boilerplate. Memory: one bucket of documents and one counter.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from minillama.curate.text import normalize


def count_lines(documents: Sequence[str], min_chars: int = 20) -> Counter:
    """Number of documents in which each normalized line (of at least ``min_chars`` characters) appears."""
    counts: Counter = Counter()
    for text in documents:
        counts.update({key for line in text.splitlines() if len(key := normalize(line)) >= min_chars})
    return counts


def remove_repeated_lines(text: str, counts: Counter, max_repeats: int = 6, min_chars: int = 20) -> tuple[str, int]:
    """``text`` without its lines that appear in more than ``max_repeats`` documents; also the number removed."""
    kept, removed = [], 0
    for line in text.splitlines():
        key = normalize(line)
        if len(key) >= min_chars and counts[key] > max_repeats:
            removed += 1
        else:
            kept.append(line)
    return "\n".join(kept), removed
