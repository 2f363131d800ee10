"""Pre-tokenization: the regular expressions that cut text into pieces before BPE sees it.

Byte-level BPE never merges across the boundaries these patterns draw, which is why a tokenizer has separate
tokens for ``" the"`` and ``"the"`` but none for ``"the."``: letters, digits, punctuation and whitespace runs
land in different pieces (Radford et al. 2019, section 2.2). Llama 3 reuses OpenAI's ``cl100k_base`` rules:
contractions, an optional leading non-letter glued to a word, numbers in groups of at most three digits, and
whitespace runs that give their last space to the next word.
"""

from __future__ import annotations

import regex

__all__ = [
    "GPT2_SPLIT_PATTERN",
    "GPT4_SPLIT_PATTERN",
    "LLAMA3_SPLIT_PATTERN",
    "last_safe_split",
]

#: GPT-2's pattern, as published with its ``encoder.py`` (Radford et al. 2019).
GPT2_SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

#: OpenAI's ``cl100k_base`` pattern (GPT-3.5/GPT-4), as tiktoken ships it.
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|"""
    r"""\s+(?!\S)|\s"""
)

#: Meta's Llama 3 pattern, character for character as in ``llama_models/llama3/tokenizer.py``.
LLAMA3_SPLIT_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"""
    r"""\s+(?!\S)|\s+"""
)

# A position p is a safe place to cut a stream when the pieces of text[:p] and text[p:] are exactly the pieces of
# text that lie on either side of p. Two kinds of place qualify for all three patterns above:
#   1. a lone newline between two non-space characters ("...end\nNext..."): cut after the newline;
#   2. a non-space character followed by a space and a letter ("word next"): cut before the space.
# In both, the piece that ends at p cannot grow past it (no pattern joins "\n" to a following non-space character
# or a letter run to a following space) and the lookahead "(?!\S)" never sees across p. The search runs backwards
# ("(?r)") so the cut lands as late as possible.
_SAFE_SPLIT = regex.compile(r"(?r)(?<=\S\n)(?=\S)|(?<=\S)(?= \p{L})")


def last_safe_split(text: str, end: int | None = None) -> int:
    """The last position ``p <= end`` where ``text`` can be cut without changing its pre-tokenization, or 0.

    Encoding ``text[:p]`` and ``text[p:]`` separately gives the same pieces (hence the same token ids) as encoding
    ``text`` at once, for the GPT-2, GPT-4 and Llama 3 patterns; this is what lets :meth:`BPETokenizer.encode_iterable`
    and the shard writer work on a stream in bounded memory. Example::

        >>> last_safe_split("To be, or not\\nto be")
        16
        >>> "To be, or not\\nto be"[:16], "To be, or not\\nto be"[16:]
        ('To be, or not\\nto', ' be')
    """
    match = _SAFE_SPLIT.search(text, 0, len(text) if end is None else end)
    return match.start() if match else 0
