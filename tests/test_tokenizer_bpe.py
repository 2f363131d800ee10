"""Byte-level BPE: training against a brute-force trainer, ids against tiktoken, files, specials, streaming."""

from __future__ import annotations

import base64
import random
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest
import tiktoken
import tiktoken.load
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minillama.tokenizer import (
    GPT2_SPLIT_PATTERN,
    GPT4_SPLIT_PATTERN,
    LLAMA3_SPLIT_PATTERN,
    BPETokenizer,
    bpe_encode_piece,
    count_pieces,
    last_safe_split,
    learn_merges,
)

SHAKESPEARE = Path("/work/shared/data/tinyshakespeare.txt")
SPECIALS = ["<|endoftext|>", "<|fim_prefix|>", "<|im_start|>"]
EXTRA_TEXT = (
    "Les élèves étudient l'économie à Paris. Ça coûte 1234567 €, n'est-ce pas?\n"
    "Москва — столица России. 東京は日本の首都です。 서울은 한국의 수도입니다. 🦙🦙 llamas!\n"
    "def f(x):\n    return x**2  # 3.14159\n\n\t\tindented\r\n"
)


def shakespeare(n_chars: int) -> str:
    if SHAKESPEARE.is_file():
        return SHAKESPEARE.read_text(encoding="utf-8")[:n_chars]
    from minillama.data import load_text

    return load_text("tinyshakespeare")[:n_chars]


@pytest.fixture(scope="module")
def tok() -> BPETokenizer:
    """A small tokenizer with multi-byte tokens for accented, Cyrillic and CJK text, and three special tokens."""
    text = shakespeare(60_000) + EXTRA_TEXT * 30
    return BPETokenizer().train(text, vocab_size=700, special_tokens=SPECIALS)


# ------------------------------------------------------------------ training


def naive_merges(piece_counts: dict[bytes, int], num_tokens: int, min_frequency: int) -> list[tuple[bytes, bytes]]:
    """The textbook trainer: recount every pair after every merge; ties -> greatest (left bytes, right bytes)."""
    words = {tuple(bytes([b]) for b in piece): n for piece, n in piece_counts.items()}
    vocab = {bytes([b]) for b in range(256)}
    merges = []
    while len(vocab) < num_tokens:
        pairs: Counter = Counter()
        for word, n in words.items():
            for pair in zip(word, word[1:], strict=False):
                pairs[pair] += n
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        if pairs[best] < min_frequency:
            break
        merges.append(best)
        vocab.add(best[0] + best[1])
        new_words: Counter = Counter()
        for word, n in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_words[tuple(out)] += n
        words = new_words
    return merges


@pytest.mark.parametrize("seed", range(6))
def test_incremental_training_equals_brute_force(seed):
    rng = random.Random(seed)
    alphabet = rng.choice(["ab", "abc", "ab ", "aab\n", "xyz 12"])
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(50, 400)))
    counts = count_pieces(text, LLAMA3_SPLIT_PATTERN)
    for min_frequency in (1, 2):
        assert learn_merges(counts, 256 + 60, min_frequency) == naive_merges(counts, 256 + 60, min_frequency)


def test_training_on_real_text_equals_brute_force():
    counts = count_pieces(shakespeare(8_000), LLAMA3_SPLIT_PATTERN)
    assert learn_merges(counts, 256 + 120) == naive_merges(counts, 256 + 120, 2)


def test_training_on_pydocs_equals_brute_force():
    # The always-available offline corpus (the help() topics in pydoc_data): prose, code samples and tables.
    from minillama.data import load_text

    counts = count_pieces(load_text("pydocs")[:20_000], LLAMA3_SPLIT_PATTERN)
    assert learn_merges(counts, 256 + 150) == naive_merges(counts, 256 + 150, 2)


def test_ties_merge_the_lexicographically_greatest_pair():
    # Every pair occurs once: the first merge is the greatest pair, ("y", "z") beats ("a", "b") and ("x", "y").
    assert learn_merges({b"ab": 3, b"xy": 3, b"yz": 3}, 257) == [(b"y", b"z")]
    # A prefix is smaller: (b"a", b"b") < (b"ab", b"b") -> the longer left token wins the tie.
    assert learn_merges({b"ab": 2}, 257) == [(b"a", b"b")]
    merges = learn_merges({b"abab": 1, b"abb": 2, b"ba": 1}, 259, min_frequency=1)
    assert merges == naive_merges({b"abab": 1, b"abb": 2, b"ba": 1}, 259, 1)


def test_hand_counted_first_merges():
    # "aaab" x3 and "ab" x1: pairs (a,a)=6, (a,b)=4 -> merge (a,a); then "aa a b": (aa,a)=3, (a,b)=4 -> merge (a,b).
    assert learn_merges({b"aaab": 3, b"ab": 1}, 258) == [(b"a", b"a"), (b"a", b"b")]


def test_train_builds_vocab_merges_and_special_ids(tok):
    assert len(tok.vocab) + len(tok.special_tokens) == tok.n_vocab == 700
    assert [tok.vocab[i] for i in range(256)] == [bytes([i]) for i in range(256)]
    for i, (left, right) in enumerate(tok.merges):
        assert tok.vocab[256 + i] == left + right
    assert tok.special_tokens == {s: 697 + i for i, s in enumerate(SPECIALS)}


def test_special_tokens_are_never_merged_across():
    text = "ab<|endoftext|>ab<|endoftext|>" * 50
    tok = BPETokenizer().train(text, vocab_size=300, special_tokens=["<|endoftext|>"])
    assert not any(b"<|" in token or b"|>" in token for token in tok.vocab.values())
    assert tok.encode(text, allowed_special="all")[:2] == [tok.ranks[b"ab"], tok.special_tokens["<|endoftext|>"]]


def test_training_stops_when_pairs_run_out():
    tok = BPETokenizer().train("abc abc", vocab_size=1000)
    assert 256 < tok.n_vocab < 1000


def test_train_validates_arguments():
    with pytest.raises(ValueError, match="at least 256"):
        BPETokenizer().train("abc", vocab_size=100)
    with pytest.raises(ValueError, match="non-empty"):
        BPETokenizer().train("abc", vocab_size=300, special_tokens=[""])


def test_train_accepts_an_iterable_of_documents():
    docs = ["the cat sat", "on the mat", "the end"] * 10
    assert BPETokenizer().train(iter(docs), 280).ranks == BPETokenizer().train(docs, 280).ranks


def test_gpt2_pattern_training_and_parity():
    text = shakespeare(20_000)
    tok = BPETokenizer().train(text, vocab_size=400, pattern=GPT2_SPLIT_PATTERN)
    assert tok.pattern == GPT2_SPLIT_PATTERN
    assert BPETokenizer(pattern=GPT2_SPLIT_PATTERN).train(text, vocab_size=400).ranks == tok.ranks
    assert tok.encode(text[:3000]) == tok.to_tiktoken().encode(text[:3000])


# ------------------------------------------------------------------ encoding


def test_bpe_encode_piece_uses_lowest_rank_first():
    ranks = {bytes([i]): i for i in range(256)} | {b"ab": 256, b"bc": 257}
    assert bpe_encode_piece(b"abc", ranks) == [256, ord("c")]
    ranks = {bytes([i]): i for i in range(256)} | {b"bc": 256, b"ab": 257}
    assert bpe_encode_piece(b"abc", ranks) == [ord("a"), 256]
    # A piece that is a token is one id even if merging could not reach it.
    ranks = {bytes([i]): i for i in range(256)} | {b"abc": 256}
    assert bpe_encode_piece(b"abc", ranks) == [256]


# Assigned code points only: the `regex` module and tiktoken's Rust regex carry different Unicode versions, so a
# code point unassigned in one may be a letter in the other (U+3D000 is, for `regex` 2026) and split differently.
ASSIGNED = st.characters(exclude_categories=("Cn", "Cs"))


def text_with_specials():
    """Assigned Unicode interleaved with whitespace runs, digit runs, contractions and special tokens."""
    parts = st.one_of(
        st.text(ASSIGNED, max_size=30),
        st.sampled_from([" ", "  ", "   ", "\n", "\n\n", "\r\n", "\t", " \n ", "\u3000", "\u00a0 "]),
        st.from_regex(r"[0-9]{1,9}", fullmatch=True),
        st.sampled_from(["'s", "'LL", "'ve ", "n't", "hello", " world", "étè", "Москва", "東京"]),
        st.sampled_from(SPECIALS),
    )
    return st.lists(parts, max_size=12).map("".join)


@settings(deadline=None, max_examples=300, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(text=text_with_specials())
def test_ids_equal_tiktoken(tok, text):
    enc = tok.to_tiktoken()
    assert tok.encode(text, allowed_special="all") == enc.encode(text, allowed_special="all")
    assert tok.encode_ordinary(text) == enc.encode_ordinary(text)
    allowed = {SPECIALS[0]}
    assert tok.encode(text, allowed_special=allowed, disallowed_special=()) == enc.encode(
        text, allowed_special=allowed, disallowed_special=()
    )


@settings(deadline=None, max_examples=300, derandomize=True)
@given(text=st.text())
def test_roundtrip_arbitrary_text(tok, text):
    assert tok.decode(tok.encode_ordinary(text)) == text


@settings(deadline=None, max_examples=100, derandomize=True)
@given(text=text_with_specials())
def test_roundtrip_with_special_tokens(tok, text):
    assert tok.decode(tok.encode(text, allowed_special="all")) == text


def test_lone_surrogates_are_replaced_as_in_tiktoken(tok):
    text = "a\ud800b"
    assert tok.encode_ordinary(text) == tok.to_tiktoken().encode_ordinary(text)
    assert tok.decode(tok.encode_ordinary(text)) == "a\ufffdb"


@settings(deadline=None, max_examples=200, derandomize=True)
@given(ids=st.lists(st.integers(0, 699), max_size=20))
def test_decode_of_any_ids_equals_tiktoken(tok, ids):
    # Arbitrary ids cut UTF-8 characters: both replace invalid bytes with U+FFFD the same way.
    assert tok.decode(ids) == tok.to_tiktoken().decode(ids)
    assert tok.decode_bytes(ids) == tok.to_tiktoken().decode_bytes(ids)


def test_decode_invalid_utf8_gives_replacement_character(tok):
    euro = tok.encode_ordinary("€")  # 3 bytes e2 82 ac
    assert tok.decode_bytes(euro) == "€".encode()
    first_byte = [tok.ranks[b"\xe2"]]
    assert tok.decode(first_byte) == "\ufffd"
    with pytest.raises(ValueError, match="not in this tokenizer"):
        tok.decode([10_000])


# ------------------------------------------------------------------ special tokens


def test_disallowed_special_token_raises_a_clear_error(tok):
    with pytest.raises(ValueError, match=r"special token '<\|endoftext\|>'.*allowed_special"):
        tok.encode("hi <|endoftext|>")
    with pytest.raises(ValueError, match="fim_prefix"):
        tok.encode("a<|fim_prefix|>b", allowed_special={"<|endoftext|>"})
    with pytest.raises(ValueError):  # tiktoken agrees that this is an error
        tok.to_tiktoken().encode("hi <|endoftext|>")


def test_special_token_semantics_match_tiktoken(tok):
    enc = tok.to_tiktoken()
    text = "a<|endoftext|>b<|im_start|>c"
    eot = tok.special_tokens["<|endoftext|>"]
    ids = tok.encode(text, allowed_special={"<|endoftext|>"}, disallowed_special=())
    assert eot in ids and tok.special_tokens["<|im_start|>"] not in ids
    assert ids == enc.encode(text, allowed_special={"<|endoftext|>"}, disallowed_special=())
    assert tok.encode(text, disallowed_special=()) == tok.encode_ordinary(text) == enc.encode_ordinary(text)
    assert tok.decode([eot]) == "<|endoftext|>"


# ------------------------------------------------------------------ files


def test_save_load_roundtrip_and_tiktoken_reads_the_rank_file(tok, tmp_path):
    path = tmp_path / "tok.model"
    tok.save(path)
    loaded = BPETokenizer.load(path)
    assert loaded.ranks == tok.ranks
    assert loaded.special_tokens == tok.special_tokens
    assert loaded.pattern == tok.pattern
    assert loaded.merges == tok.merges  # recovered from the ranks alone
    assert loaded.fingerprint() == tok.fingerprint()
    assert tiktoken.load.load_tiktoken_bpe(str(path)) == tok.ranks
    line = path.read_text().splitlines()[300]
    token_b64, rank = line.split()
    assert tok.vocab[int(rank)] == base64.b64decode(token_b64)


def test_load_without_sidecar_uses_arguments_or_llama3_defaults(tok, tmp_path):
    path = tmp_path / "tok.model"
    tok.save(path)
    path.with_name("tok.model.json").unlink()
    assert BPETokenizer.load(path).pattern == LLAMA3_SPLIT_PATTERN
    assert BPETokenizer.load(path).special_tokens == {}
    assert BPETokenizer.load(path, pattern=GPT4_SPLIT_PATTERN, special_tokens={"<|x|>": 700}).n_vocab == 701


@pytest.mark.parametrize(
    "contents, message",
    [
        (b"", "empty"),
        (b"YQ== 0 extra\n", "expected '<base64 token> <rank>'"),
        (b"not_base64! 0\n", "not valid base64"),
        (b"YQ== -1\n", "not a non-negative integer"),
        (b"YQ== 0\nYQ== 1\n", "appears twice"),
        (b"YQ== 0\nYg== 0\n", "rank 0 appears twice"),
        (b"YQ== 0\nYg== 2\n", "rank 1 is missing"),
        (b"YQ== 0\nYg== 1\n", "all 256 single bytes"),
        ("YQ== 0 é\n".encode(), "not ASCII"),
    ],
)
def test_corrupt_rank_files_raise_clear_errors(tmp_path, contents, message):
    path = tmp_path / "bad.model"
    path.write_bytes(contents)
    with pytest.raises(ValueError, match=message):
        BPETokenizer.load(path)


def test_missing_and_corrupt_sidecar(tok, tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer file not found"):
        BPETokenizer.load(tmp_path / "nope.model")
    path = tmp_path / "tok.model"
    tok.save(path)
    path.with_name("tok.model.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        BPETokenizer.load(path)
    path.with_name("tok.model.json").write_text('{"format": "minillama-bpe", "pattern": 3, "special_tokens": {}}')
    with pytest.raises(ValueError, match="pattern"):
        BPETokenizer.load(path)


def test_special_ids_must_not_collide_with_ordinary_ids(tok):
    with pytest.raises(ValueError, match="collide"):
        BPETokenizer.from_ranks(tok.ranks, special_tokens={"<|x|>": 5})


# ------------------------------------------------------------------ streaming


@pytest.mark.parametrize(
    "pattern", [LLAMA3_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, GPT2_SPLIT_PATTERN], ids=["llama3", "gpt4", "gpt2"]
)
@settings(deadline=None, max_examples=150, derandomize=True)
@given(text=text_with_specials())
def test_safe_split_keeps_the_pieces(pattern, text):
    import regex

    split = regex.compile(pattern).findall
    for end in range(len(text), 0, -7):
        cut = last_safe_split(text, end)
        if cut:
            assert split(text[:cut]) + split(text[cut:]) == split(text), cut


@settings(deadline=None, max_examples=150, derandomize=True)
@given(text=text_with_specials(), sizes=st.lists(st.integers(1, 9), min_size=1, max_size=5))
def test_encode_iterable_equals_encode(tok, text, sizes):
    chunks, i = [], 0
    while i < len(text):
        size = sizes[len(chunks) % len(sizes)]
        chunks.append(text[i : i + size])
        i += size
    expected = tok.encode(text, allowed_special="all")
    assert list(tok.encode_iterable(chunks, allowed_special="all", buffer_chars=4)) == expected


def test_encode_iterable_on_real_text_equals_encode(tok):
    text = shakespeare(100_000)
    lines = text.splitlines(keepends=True)
    assert list(tok.encode_iterable(lines, buffer_chars=1000)) == tok.encode(text)


def test_encode_iterable_without_safe_places_still_terminates(tok):
    text = "x" * 5000  # no space, no newline: cut by force every 32 * buffer_chars characters
    ids = list(tok.encode_iterable((text[i : i + 10] for i in range(0, 5000, 10)), buffer_chars=16))
    assert tok.decode(ids) == text


def test_encode_iterable_memory_is_bounded(tok):
    lines = shakespeare(200_000).splitlines(keepends=True)
    tok.encode_ordinary("".join(lines))  # warm the piece cache, which is bounded and shared by all calls

    def stream(n_chars: int):
        sent = 0
        while sent < n_chars:
            for line in lines:
                yield line
                sent += len(line)

    def peak_bytes(n_chars: int) -> tuple[int, int]:
        tracemalloc.start()
        count = sum(1 for _ in tok.encode_iterable(stream(n_chars), buffer_chars=1 << 14))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak, count

    small_peak, small_count = peak_bytes(400_000)
    large_peak, large_count = peak_bytes(2_400_000)
    assert large_count > 5 * small_count
    # The list of ids alone would take >= 8 bytes per token; streaming holds a buffer's worth, whatever the length.
    assert large_peak < 8 * large_count / 4
    assert large_peak < 2 * small_peak + 200_000


def test_tokens_that_merging_cannot_reach():
    # ":." outranks ".:", so merging ".:.:" gives ".", ":.", ":" and stops; only the whole-piece lookup finds it
    # (678 tokens of Meta's Llama 3 table are like this). tiktoken agrees, and `merges` names a stand-in split.
    ranks = {bytes([i]): i for i in range(256)} | {b":.": 256, b".:": 257, b".:.:": 258}
    tok = BPETokenizer.from_ranks(ranks)
    assert tok.encode_ordinary(".:.:") == tok.to_tiktoken().encode_ordinary(".:.:") == [258]
    assert tok.encode_ordinary("x.:.:") == tok.to_tiktoken().encode_ordinary("x.:.:")
    assert tok.merges == [(b":", b"."), (b".", b":"), (b".:", b".:")]
