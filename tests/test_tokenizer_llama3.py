"""The Llama 3 tokenizer against Meta's reference implementation (``llama_models.llama3.tokenizer``)."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillama.tokenizer import (
    LLAMA3_SPECIAL_TOKENS,
    LLAMA3_TOKENIZER_SHA256,
    BPETokenizer,
    Llama3Tokenizer,
    default_tokenizer_path,
)
from minillama.tokenizer.llama3 import split_long_runs

reference = pytest.importorskip("llama_models.llama3.tokenizer")

FIXED_STRINGS = [
    "",
    "hello world",
    "Hello, World! How's it going? I'm fine, they'll say; we'd've.",
    "The year 2024 had 366 days; π ≈ 3.14159265358979.",
    "1234567890 12 123 1234",
    "   leading spaces and trailing   ",
    "tabs\tand\nnewlines\r\n\r\nand\n\n\nmore",
    "Les élèves étudient l'économie. Ça coûte 12 €.",
    "Москва — столица России.",
    "東京は日本の首都です。北京是中国的首都。",
    "서울은 한국의 수도입니다.",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "emoji 🦙🦙🦙 👩‍👩‍👧‍👦 flags 🇫🇷",
    "def f(x):\n    return x ** 2  # square\n",
    '{"key": [1, 2, 3], "nested": {"a": null}}',
    "<|begin_of_text|> is written as text by default",
    " SolidGoldMagikarp petertodd  davidjl",
    "a" * 1000,
    " " * 1000 + "x",
]


@pytest.fixture(scope="module")
def tok() -> Llama3Tokenizer:
    return Llama3Tokenizer()


@pytest.fixture(scope="module")
def meta():
    return reference.Tokenizer(default_tokenizer_path())


def test_default_file_is_metas_published_tokenizer():
    assert hashlib.sha256(default_tokenizer_path().read_bytes()).hexdigest() == LLAMA3_TOKENIZER_SHA256


def test_special_tokens_have_metas_names_and_ids(tok, meta):
    assert tok.special_tokens == meta.special_tokens
    assert len(LLAMA3_SPECIAL_TOKENS) == 256
    assert tok.special_tokens["<|begin_of_text|>"] == 128000
    assert tok.special_tokens["<|end_of_text|>"] == 128001
    assert tok.special_tokens["<|start_header_id|>"] == 128006
    assert tok.special_tokens["<|end_header_id|>"] == 128007
    assert tok.special_tokens["<|eom_id|>"] == 128008
    assert tok.special_tokens["<|eot_id|>"] == 128009
    assert tok.special_tokens["<|python_tag|>"] == 128010
    assert tok.special_tokens["<|reserved_special_token_245|>"] == 128255
    assert (tok.bos_id, tok.eos_id, tok.eot_id, tok.eom_id, tok.pad_id) == (
        meta.bos_id,
        meta.eos_id,
        meta.eot_id,
        meta.eom_id,
        meta.pad_id,
    )
    assert tok.stop_tokens == meta.stop_tokens
    assert tok.n_words == meta.n_words == tok.n_vocab == 128256


@pytest.mark.parametrize("text", FIXED_STRINGS)
@pytest.mark.parametrize("bos, eos", [(False, False), (True, True)])
def test_fixed_strings_equal_meta(tok, meta, text, bos, eos):
    ids = tok.encode(text, bos=bos, eos=eos)
    assert ids == meta.encode(text, bos=bos, eos=eos)
    assert tok.decode(ids) == meta.decode(ids)


def test_known_ids(tok):
    # Ids published with Llama 3 (e.g. in Meta's and Hugging Face's examples).
    assert tok.encode("hello world", bos=True) == [128000, 15339, 1917]
    assert tok.encode("This is a test sentence.", bos=True, eos=True) == [
        128000,
        2028,
        374,
        264,
        1296,
        11914,
        13,
        128001,
    ]


@settings(deadline=None, max_examples=300, derandomize=True)
@given(
    text=st.lists(
        st.one_of(
            st.text(st.characters(exclude_categories=("Cn", "Cs")), max_size=40),
            st.sampled_from([" ", "\n\n", "\r\n", "\t ", "  \n", "'s", "'RE", "12345", "<|eot_id|>"]),
        ),
        max_size=10,
    ).map("".join)
)
def test_generated_strings_equal_meta(tok, meta, text):
    assert tok.encode(text) == meta.encode(text, bos=False, eos=False)
    assert tok.decode(tok.encode(text)) == text


def test_real_text_equals_meta(tok, meta):
    from pathlib import Path

    path = Path("/work/shared/data/tinyshakespeare.txt")
    if path.is_file():
        text = path.read_text(encoding="utf-8")[:200_000]
    else:
        from minillama.data import load_text

        text = load_text("tinyshakespeare")[:200_000]
    assert tok.encode(text) == meta.encode(text, bos=False, eos=False)


@pytest.mark.parametrize(
    "text",
    [
        " " * 60_000 + "end",  # a whitespace run longer than 25,000 characters
        "x" * 30_000 + " y",  # a non-whitespace run longer than 25,000 characters
        ("word " * 90_000)[:450_000],  # longer than one 400,000-character slice
    ],
    ids=["spaces", "letters", "long"],
)
def test_long_inputs_are_sliced_like_meta(tok, meta, text):
    assert tok.encode(text) == meta.encode(text, bos=False, eos=False)


@settings(deadline=None, max_examples=300, derandomize=True)
@given(text=st.text(alphabet=st.sampled_from("ab \n\t\u3000\x1c"), max_size=40), max_run=st.integers(1, 6))
def test_split_long_runs_equals_meta(text, max_run):
    assert list(split_long_runs(text, max_run)) == list(
        reference.Tokenizer._split_whitespaces_or_nonwhitespaces(text, max_run)
    )


def test_special_token_arguments_follow_meta(tok, meta):
    text = "<|start_header_id|>user<|end_header_id|>"
    assert tok.encode(text) == meta.encode(text, bos=False, eos=False)  # default: plain text
    special = tok.encode(text, allowed_special="all")
    assert special == meta.encode(text, bos=False, eos=False, allowed_special="all")
    assert special[0] == 128006 and special[-1] == 128007
    with pytest.raises(ValueError, match="disallowed special token"):
        tok.encode(text, disallowed_special="all")


def test_decode_errors_and_invalid_utf8(tok):
    with pytest.raises(ValueError, match="not in the Llama 3 vocabulary"):
        tok.decode([128256])
    llama = tok.encode("🦙")
    assert len(llama) > 1 and tok.decode(llama[:1]) == "\ufffd"  # half a character
    assert tok.decode_bytes(llama) == "🦙".encode()


def test_our_pure_python_bpe_reads_metas_file(tok):
    bpe = BPETokenizer.load(default_tokenizer_path(), special_tokens=tok.special_tokens)
    rng = random.Random(0)
    texts = FIXED_STRINGS + ["".join(rng.choice("ab cd\n1é東🦙") for _ in range(100)) for _ in range(20)]
    for text in texts:
        assert bpe.encode_ordinary(text) == tok.encode(text)
    assert bpe.fingerprint() == tok.fingerprint()


def test_missing_and_corrupt_model_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer file not found"):
        Llama3Tokenizer(tmp_path / "tokenizer.model")
    truncated = tmp_path / "truncated.model"
    truncated.write_bytes(default_tokenizer_path().read_bytes()[:1000])  # cut in the middle of a line
    with pytest.raises(ValueError, match=r"truncated\.model"):
        Llama3Tokenizer(truncated)
