"""Byte-level byte-pair encoding (BPE): a trainer and a codec in pure Python.

BPE started as a compression scheme (Gage 1994): repeatedly replace the most frequent pair of adjacent symbols
with a new symbol. Sennrich et al. (2016) used it to build subword vocabularies, and GPT-2 (Radford et al. 2019)
ran it on UTF-8 *bytes*, so every string is encodable with no unknown token. Llama 3 is such a tokenizer with
128,000 learned tokens plus 256 special ones. Training here follows the usual recipe:

1. cut the text into pieces with a regular expression (:mod:`minillama.tokenizer.patterns`) and count each
   distinct piece once, so merges never cross a piece boundary and work is proportional to the vocabulary of
   pieces, not to the length of the text;
2. count adjacent pairs in all pieces (weighted by piece frequency), and keep an index pair -> pieces holding it;
3. merge the most frequent pair, updating only the counts of the pairs next to each merged occurrence, and
   repeat until the vocabulary is full.

Encoding follows tiktoken: a piece that is a token is one id; otherwise start from single bytes and repeatedly
merge the adjacent pair whose concatenation has the lowest rank (id). That rule needs only the rank table, so
the trained tokenizer is saved as a tiktoken rank file and :meth:`BPETokenizer.to_tiktoken` gives the same ids
an order of magnitude faster.
"""

from __future__ import annotations

import heapq
import os
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping
from functools import lru_cache
from itertools import pairwise
from typing import Literal

import regex

from .patterns import LLAMA3_SPLIT_PATTERN, last_safe_split
from .rankfile import read_rank_file, read_sidecar, tokenizer_fingerprint, write_rank_file, write_sidecar

__all__ = ["BPETokenizer", "bpe_encode_piece", "bpe_merge_parts", "count_pieces", "learn_merges"]

# Inverting each byte (b -> 255 - b) and ending with a character above every inverted byte turns "greater" into
# "smaller" for lexicographic order, prefixes included. The trainer's min-heap then pops, among pairs with equal
# counts, the lexicographically greatest pair of byte strings, with every comparison done in C.
_INVERT = bytes(range(255, -1, -1))


def _descending(token: bytes) -> str:
    """A string key whose ascending order is the descending order of ``token``: ``b"b" -> key < key(b"a")``."""
    return token.translate(_INVERT).decode("latin-1") + "\u0100"


@lru_cache(maxsize=64)
def _special_regex(tokens: frozenset[str]) -> regex.Pattern | None:
    """One alternation matching any of ``tokens`` (longest first, so a token wins over its own prefix)."""
    ordered = sorted(tokens, key=lambda t: (-len(t), t))
    return regex.compile("|".join(regex.escape(t) for t in ordered)) if ordered else None


def _fix_surrogates(text: str) -> str:
    """Replace lone surrogates (not encodable as UTF-8) with U+FFFD, as tiktoken does before encoding."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _utf8(piece: str) -> bytes:
    try:
        return piece.encode("utf-8")
    except UnicodeEncodeError:
        return _fix_surrogates(piece).encode("utf-8")


def count_pieces(texts: str | Iterable[str], pattern: str, special_tokens: Collection[str] = ()) -> Counter[bytes]:
    """Count the UTF-8 pre-token pieces of ``texts`` (a string or an iterable of strings).

    Special tokens are cut out first and never counted, so no merge can reach into or across them.
    Example: ``count_pieces("the cat the", LLAMA3_SPLIT_PATTERN) -> {b"the": 1, b" cat": 1, b" the": 1}``.
    """
    if isinstance(texts, str):
        texts = [texts]
    split = regex.compile(pattern).findall
    special = _special_regex(frozenset(special_tokens))
    counts: Counter[str] = Counter()
    for text in texts:
        for segment in special.split(text) if special else (text,):
            counts.update(split(segment))
    pieces: Counter[bytes] = Counter()
    for piece, n in counts.items():
        pieces[_utf8(piece)] += n
    return pieces


def learn_merges(
    piece_counts: Mapping[bytes, int],
    num_tokens: int,
    min_frequency: int = 2,
    progress: bool = False,
) -> list[tuple[bytes, bytes]]:
    """Learn BPE merges from ``piece_counts`` until the vocabulary (256 bytes + merged tokens) has ``num_tokens``.

    Each step merges the pair of adjacent tokens with the highest count, ties broken towards the lexicographically
    greatest ``(left bytes, right bytes)``; training stops early when no pair occurs ``min_frequency`` times.
    Only the pieces that contain the chosen pair are touched (an index pair -> pieces finds them), and only the
    counts of pairs next to a merged occurrence change, so a step costs time proportional to the pieces it
    changes; a max-heap with lazy deletion finds the next pair. Example: pieces ``{b"aaab": 3, b"ab": 1}`` ->
    pairs ``(a,a): 6, (a,b): 4`` -> first merge ``(b"a", b"a")``.
    """
    token_bytes = [bytes([i]) for i in range(256)]
    token_id = {token: i for i, token in enumerate(token_bytes)}
    sort_key = [_descending(token) for token in token_bytes]

    words = [list(piece) for piece in piece_counts if len(piece) > 1]  # pieces as lists of token ids
    freqs = [n for piece, n in piece_counts.items() if len(piece) > 1]
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> indices of words that (may) contain it
    for index, (word, freq) in enumerate(zip(words, freqs, strict=True)):
        for pair in pairwise(word):
            pair_counts[pair] += freq
            where[pair].add(index)
    heap = [(-count, sort_key[a], sort_key[b], a, b) for (a, b), count in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[bytes, bytes]] = []
    bar = _progress_bar(num_tokens - len(token_bytes), progress)
    while len(token_bytes) < num_tokens and heap:
        neg_count, _, _, a, b = heapq.heappop(heap)
        count = pair_counts.get((a, b), 0)
        if count != -neg_count:  # stale entry: the count fell since it was pushed
            if count:
                heapq.heappush(heap, (-count, sort_key[a], sort_key[b], a, b))
            continue
        if count < min_frequency:
            break
        merged = token_bytes[a] + token_bytes[b]
        new = token_id.get(merged)
        if new is None:  # (a rare second route to an existing token reuses its id, as tiktoken ranks must be unique)
            new = len(token_bytes)
            token_bytes.append(merged)
            token_id[merged] = new
            sort_key.append(_descending(merged))
            bar.update(1)
        merges.append((token_bytes[a], token_bytes[b]))
        for pair in _merge_pair(a, b, new, words, freqs, pair_counts, where):
            heapq.heappush(heap, (-pair_counts[pair], sort_key[pair[0]], sort_key[pair[1]], *pair))
    bar.close()
    return merges


def _merge_pair(
    a: int,
    b: int,
    new: int,
    words: list[list[int]],
    freqs: list[int],
    pair_counts: dict[tuple[int, int], int],
    where: dict[tuple[int, int], set[int]],
) -> set[tuple[int, int]]:
    """Replace ``(a, b)`` by ``new`` in every word that holds it; update pair counts; return the pairs that grew.

    At each occurrence ``x a b y`` the pairs ``(x, a)`` and ``(b, y)`` lose the word's frequency and ``(x, new)``,
    ``(new, y)`` gain it. When occurrences touch (``a b a b``), ``x`` is the ``new`` just written, and the ``(new, a)``
    gained at the first occurrence is given back at the second: net ``(b, a) -1``, ``(new, new) +1``.
    """
    grown: set[tuple[int, int]] = set()

    def drop(pair: tuple[int, int], freq: int) -> None:
        left = pair_counts[pair] - freq
        if left:
            pair_counts[pair] = left
        else:
            del pair_counts[pair]
            where.pop(pair, None)

    def add(pair: tuple[int, int], freq: int, index: int) -> None:
        pair_counts[pair] += freq
        where[pair].add(index)
        grown.add(pair)

    for index in where.pop((a, b), ()):
        word, freq = words[index], freqs[index]
        out: list[int] = []
        i, n = 0, len(word)
        while i < n:
            if word[i] == a and i + 1 < n and word[i + 1] == b:
                if out:
                    drop((out[-1], a), freq)
                    add((out[-1], new), freq, index)
                if i + 2 < n:
                    drop((b, word[i + 2]), freq)
                    add((new, word[i + 2]), freq, index)
                out.append(new)
                i += 2
            else:
                out.append(word[i])
                i += 1
        words[index] = out
    pair_counts.pop((a, b), None)
    return {pair for pair in grown if pair in pair_counts}  # (set &= dict would scan the whole dict)


def _progress_bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="BPE merges", unit="merge", disable=not enabled)


def bpe_merge_parts(piece: bytes, ranks: Mapping[bytes, int]) -> list[bytes]:
    """Split ``piece`` into tokens: from single bytes, merge the adjacent pair whose concatenation ranks lowest.

    This is tiktoken's rule: repeat until no adjacent pair is a token; when the same pair occurs twice, the leftmost
    goes first. Example with ranks ``{a:0, b:1, c:2, ab:3, bc:4}``: ``b"abc"`` -> ``[a, b, c]`` -> ``[ab, c]``
    (``ab`` outranks ``bc``) -> no ``abc`` token, stop.
    """
    parts = [piece[i : i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        best_rank, best = None, -1
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and (best_rank is None or rank < best_rank):
                best_rank, best = rank, i
        if best_rank is None:
            break
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    return parts


def bpe_encode_piece(piece: bytes, ranks: Mapping[bytes, int]) -> list[int]:
    """Encode one pre-token piece to ids exactly as tiktoken does.

    A piece that is itself a token is one id (even if merging would not reach it); otherwise
    :func:`bpe_merge_parts`. Example with ranks ``{a:0, b:1, c:2, ab:3, bc:4}``: ``b"abc" -> [3, 2]``.
    """
    rank = ranks.get(piece)
    if rank is not None:
        return [rank]
    return [ranks[part] for part in bpe_merge_parts(piece, ranks)]


class BPETokenizer:
    """A byte-level BPE tokenizer: train it, encode and decode with it, save it as a tiktoken rank file.

    ``vocab`` maps ids to token bytes (ids 0-255 are the single bytes for a trained tokenizer), ``merges`` lists
    the learned pairs in order, ``special_tokens`` maps special strings (``"<|end_of_text|>"``) to ids placed
    after the learned tokens. The id of a token is its rank: lower ids were learned earlier.

        >>> tok = BPETokenizer().train("the cat sat on the mat " * 20, vocab_size=270)
        >>> tok.decode(tok.encode("the cat")) == "the cat"
        True
    """

    _CACHE_SIZE = 1 << 16  # pieces whose ids are remembered between calls

    def __init__(self, pattern: str = LLAMA3_SPLIT_PATTERN, name: str = "minillama-bpe") -> None:
        self.name = name
        self._set_state({bytes([i]): i for i in range(256)}, pattern, {}, merges=[])

    # ---------------------------------------------------------------- state
    def _set_state(
        self,
        ranks: dict[bytes, int],
        pattern: str,
        special_tokens: Mapping[str, int],
        merges: list[tuple[bytes, bytes]] | None,
    ) -> None:
        overlap = set(special_tokens.values()) & set(ranks.values())
        if overlap:
            raise ValueError(f"special token ids {sorted(overlap)[:5]} collide with ordinary token ids")
        self.pattern = pattern
        self.ranks = ranks
        self.vocab: dict[int, bytes] = {rank: token for token, rank in ranks.items()}
        self.special_tokens: dict[str, int] = dict(special_tokens)
        self._merges = merges
        self._split = regex.compile(pattern).findall
        self._decoder = {**self.vocab, **{i: s.encode("utf-8") for s, i in self.special_tokens.items()}}
        self._n_vocab = max(self._decoder) + 1
        self._cache: dict[str, list[int]] = {}
        self._tiktoken = None

    @property
    def merges(self) -> list[tuple[bytes, bytes]]:
        """The learned merges in order; for a tokenizer loaded from ranks, recovered from the rank table.

        Token ``t`` of rank ``r`` came from the two parts that BPE with ranks below ``r`` reduces ``t`` to.
        """
        if self._merges is None:
            self._merges = _recover_merges(self.ranks)
        return self._merges

    @property
    def n_vocab(self) -> int:
        """Number of ids: one more than the largest id, ordinary or special (tiktoken's ``n_vocab``)."""
        return self._n_vocab

    @property
    def special_tokens_set(self) -> set[str]:
        return set(self.special_tokens)

    def fingerprint(self) -> str:
        """SHA-256 of the rank table, pattern and special tokens (see :func:`tokenizer_fingerprint`)."""
        return tokenizer_fingerprint(self.ranks, self.pattern, self.special_tokens)

    def __repr__(self) -> str:
        return f"BPETokenizer(name={self.name!r}, tokens={len(self.vocab)}, special_tokens={len(self.special_tokens)})"

    def __getstate__(self) -> dict:
        return {
            "name": self.name,
            "ranks": self.ranks,
            "pattern": self.pattern,
            "special_tokens": self.special_tokens,
            "merges": self._merges,
        }

    def __setstate__(self, state: dict) -> None:
        self.name = state["name"]
        self._set_state(state["ranks"], state["pattern"], state["special_tokens"], state["merges"])

    # ---------------------------------------------------------------- training
    def train(
        self,
        text: str | Iterable[str],
        vocab_size: int,
        special_tokens: Collection[str] = (),
        pattern: str | None = None,
        *,
        min_frequency: int = 2,
        progress: bool = False,
    ) -> BPETokenizer:
        """Learn a vocabulary of ``vocab_size`` ids (256 bytes + merges + ``special_tokens``) from ``text``.

        ``text`` is a string or an iterable of strings (documents). ``pattern`` is the pre-tokenization regex
        (default: the one given to the constructor, Llama 3's unless told otherwise). Special tokens are cut out of
        the text before counting and get the last ids. Training stops early, with a smaller vocabulary, once no
        pair of tokens occurs ``min_frequency`` times. Returns ``self``.
        """
        special_tokens = list(dict.fromkeys(special_tokens))
        if any(not isinstance(s, str) or not s for s in special_tokens):
            raise ValueError("special tokens must be non-empty strings")
        if vocab_size < 256 + len(special_tokens):
            raise ValueError(
                f"vocab_size ({vocab_size}) must be at least 256 (one token per byte) "
                f"+ {len(special_tokens)} special tokens"
            )
        pattern = self.pattern if pattern is None else pattern
        counts = count_pieces(text, pattern, special_tokens)
        merges = learn_merges(counts, vocab_size - len(special_tokens), min_frequency, progress)
        ranks = {bytes([i]): i for i in range(256)}
        for left, right in merges:
            ranks.setdefault(left + right, len(ranks))
        special = {token: len(ranks) + i for i, token in enumerate(special_tokens)}
        self._set_state(ranks, pattern, special, merges)
        return self

    # ---------------------------------------------------------------- encoding
    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` treating special-token strings as plain text."""
        try:
            return self._encode_ordinary(text)
        except UnicodeEncodeError:
            return self._encode_ordinary(_fix_surrogates(text))

    def _encode_ordinary(self, text: str) -> list[int]:
        ids: list[int] = []
        cache, ranks = self._cache, self.ranks
        for piece in self._split(text):
            piece_ids = cache.get(piece)
            if piece_ids is None:
                piece_ids = bpe_encode_piece(piece.encode("utf-8"), ranks)
                if len(cache) >= self._CACHE_SIZE:
                    cache.clear()
                cache[piece] = piece_ids
            ids.extend(piece_ids)
        return ids

    def encode(
        self,
        text: str,
        *,
        allowed_special: Literal["all"] | Collection[str] = frozenset(),
        disallowed_special: Literal["all"] | Collection[str] = "all",
    ) -> list[int]:
        """Encode ``text`` to ids, with tiktoken's rules for special tokens.

        Special-token strings in ``allowed_special`` become their ids. Those in ``disallowed_special`` (by default
        every special token not allowed) raise ``ValueError``: text from users must not smuggle in control tokens.
        Pass ``disallowed_special=()`` to encode them as ordinary text instead.
        """
        allowed = self.special_tokens_set if allowed_special == "all" else set(allowed_special)
        disallowed = self.special_tokens_set - allowed if disallowed_special == "all" else set(disallowed_special)
        if disallowed:
            match = _special_regex(frozenset(disallowed)).search(text)
            if match:
                raise ValueError(
                    f"text contains the special token {match.group()!r} at character {match.start()}, which is "
                    f"disallowed. Pass allowed_special={{{match.group()!r}}} to encode it as a special token, or "
                    f"disallowed_special=() to encode it as ordinary text."
                )
        special = _special_regex(frozenset(allowed & self.special_tokens_set))
        if special is None:
            return self.encode_ordinary(text)
        ids: list[int] = []
        start = 0
        for match in special.finditer(text):
            ids.extend(self.encode_ordinary(text[start : match.start()]))
            ids.append(self.special_tokens[match.group()])
            start = match.end()
        ids.extend(self.encode_ordinary(text[start:]))
        return ids

    def encode_iterable(
        self,
        chunks: Iterable[str],
        *,
        allowed_special: Literal["all"] | Collection[str] = frozenset(),
        disallowed_special: Literal["all"] | Collection[str] = "all",
        buffer_chars: int = 1 << 16,
    ) -> Iterator[int]:
        """Encode a stream of text chunks (lines of a file, say) lazily, holding about ``buffer_chars`` at a time.

        The buffer is cut at the last safe place (:func:`~minillama.tokenizer.patterns.last_safe_split`), so the ids
        equal ``encode("".join(chunks))``. Text with no safe place in ``32 * buffer_chars`` characters (no
        ``" word"`` and no single newline) is cut there anyway, like Meta's chunking of very long inputs.
        """
        if buffer_chars < 1:
            raise ValueError(f"buffer_chars must be positive, got {buffer_chars}")
        pending: list[str] = []
        size, threshold = 0, buffer_chars
        for chunk in chunks:
            pending.append(chunk)
            size += len(chunk)
            if size < threshold:
                continue
            text = "".join(pending)
            cut = last_safe_split(text)
            if cut == 0 and len(text) < 32 * buffer_chars:
                pending, threshold = [text], 2 * threshold  # look again once twice as much has arrived
                continue
            cut = cut or len(text)
            yield from self.encode(text[:cut], allowed_special=allowed_special, disallowed_special=disallowed_special)
            pending, size, threshold = [text[cut:]], len(text) - cut, buffer_chars
        yield from self.encode("".join(pending), allowed_special=allowed_special, disallowed_special=disallowed_special)

    # ---------------------------------------------------------------- decoding
    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of ``ids`` joined; special ids give the UTF-8 of their strings."""
        try:
            return b"".join(self._decoder[i] for i in ids)
        except KeyError as e:
            raise ValueError(f"token id {e.args[0]} is not in this tokenizer (ids are 0..{self.n_vocab - 1})") from None

    def decode(self, ids: Iterable[int]) -> str:
        """Decode ``ids`` to text. Bytes that are not valid UTF-8 (half a character) become U+FFFD, as in tiktoken."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # ---------------------------------------------------------------- interop and files
    def to_tiktoken(self):
        """A ``tiktoken.Encoding`` with this tokenizer's ranks, pattern and special tokens (same ids, Rust speed).

        The ids equal :meth:`encode`'s for all assigned Unicode characters. Code points that one Unicode version
        leaves unassigned and a newer one makes letters can be split differently, because the ``regex`` module
        and tiktoken's Rust regex engine each carry their own Unicode tables.
        """
        if self._tiktoken is None:
            import tiktoken

            self._tiktoken = tiktoken.Encoding(
                name=self.name, pat_str=self.pattern, mergeable_ranks=self.ranks, special_tokens=self.special_tokens
            )
        return self._tiktoken

    def save(self, path: str | os.PathLike) -> None:
        """Write the rank file ``path`` (tiktoken format) and its sidecar ``path.json`` (pattern, special tokens)."""
        write_rank_file(path, self.ranks)
        write_sidecar(path, self.pattern, self.special_tokens, self.name)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        pattern: str | None = None,
        special_tokens: Mapping[str, int] | None = None,
    ) -> BPETokenizer:
        """Load a rank file (ours, tiktoken's or Meta's ``tokenizer.model``).

        Pattern and special tokens come from the sidecar ``path.json`` when there is one, else from the arguments,
        else default to the Llama 3 pattern and no special tokens.
        """
        ranks = read_rank_file(path)
        meta = read_sidecar(path) or {}
        name = meta.get("name", os.path.basename(os.fspath(path)))
        pattern = pattern if pattern is not None else meta.get("pattern", LLAMA3_SPLIT_PATTERN)
        special = special_tokens if special_tokens is not None else meta.get("special_tokens", {})
        return cls.from_ranks(ranks, pattern=pattern, special_tokens=special, name=name)

    @classmethod
    def from_ranks(
        cls,
        ranks: Mapping[bytes, int],
        *,
        pattern: str = LLAMA3_SPLIT_PATTERN,
        special_tokens: Mapping[str, int] | None = None,
        name: str = "minillama-bpe",
    ) -> BPETokenizer:
        """A tokenizer from a rank table (``tiktoken.Encoding._mergeable_ranks``, or a loaded rank file)."""
        missing = [b for b in range(256) if bytes([b]) not in ranks]
        if missing:
            raise ValueError(f"a byte-level rank table needs all 256 single bytes; {len(missing)} are missing")
        tok = cls.__new__(cls)
        tok.name = name
        tok._set_state(dict(ranks), pattern, dict(special_tokens or {}), merges=None)
        return tok


def _recover_merges(ranks: Mapping[bytes, int]) -> list[tuple[bytes, bytes]]:
    """Recover the merge list from a rank table, in rank order.

    A token of rank ``r`` normally reduces to exactly two parts under BPE with the tokens of lower rank; that pair
    is the merge that created it (what minbpe's ``recover_merges`` does for GPT-4's table). Some tables hold
    tokens that merging cannot reach: 678 of the tokens Meta added to Llama 3 (``b" vi\xe1\xbb\x87c"``, " việc",
    reduces to three parts) are only ever produced by the whole-piece lookup of :func:`bpe_encode_piece`. For
    those, the split into two lower-ranked tokens whose larger rank is smallest stands in as the merge.
    """
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) == 1:
            continue
        parts = bpe_merge_parts(token, _RanksBelow(ranks, rank))
        if len(parts) != 2:
            splits = [
                (max(ranks[token[:i]], ranks[token[i:]]), i)
                for i in range(1, len(token))
                if ranks.get(token[:i], rank) < rank and ranks.get(token[i:], rank) < rank
            ]
            if not splits:
                raise ValueError(f"token {token!r} (rank {rank}) is not made of two lower-ranked tokens")
            cut = min(splits)[1]
            parts = [token[:cut], token[cut:]]
        merges.append((parts[0], parts[1]))
    return merges


class _RanksBelow:
    """The lookups of ``ranks`` that :func:`bpe_merge_parts` makes, restricted to ranks below ``limit``."""

    def __init__(self, ranks: Mapping[bytes, int], limit: int) -> None:
        self.ranks, self.limit = ranks, limit

    def get(self, token: bytes, default: int | None = None) -> int | None:
        rank = self.ranks.get(token)
        return rank if rank is not None and rank < self.limit else default
