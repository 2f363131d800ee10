"""Our tokenizers exported as Hugging Face ``tokenizer.json``: ``transformers.AutoTokenizer`` must give our ids.

The reference on one side is our own encoder (``BPETokenizer``, ``Llama3Tokenizer``, which the tokenizer tests check
against tiktoken and Meta's code); on the other, Hugging Face's Rust ``tokenizers`` pipeline, which shares no code
with them: a different regex engine (Oniguruma), a different BPE (merge list instead of rank table).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minillama.tokenizer import (
    GPT2_SPLIT_PATTERN,
    GPT4_SPLIT_PATTERN,
    LLAMA3_SPLIT_PATTERN,
    BPETokenizer,
    Llama3Tokenizer,
    default_tokenizer_path,
)
from minillama.tokenizer.huggingface import (
    bytes_to_unicode,
    hf_merges,
    hf_tokenizer_json,
    load_tokenizer,
    save_hf_tokenizer,
)

transformers = pytest.importorskip("transformers")

SHAKESPEARE = Path("/work/shared/data/tinyshakespeare.txt")
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]
EXTRA_TEXT = (
    "Les élèves étudient l'économie à Paris. Ça coûte 1234567 €, n'est-ce pas?\n"
    "Москва — столица России. 東京は日本の首都です。 서울은 한국의 수도입니다. 🦙🦙 llamas!\n"
    "def f(x):\n    return x**2  # 3.14159\n\n\t\tindented\r\n   trailing   \n"
)


def shakespeare() -> str:
    if SHAKESPEARE.is_file():
        return SHAKESPEARE.read_text(encoding="utf-8")
    from minillama.data import load_text

    return load_text("tinyshakespeare")


def auto_tokenizer(folder: Path):
    return transformers.AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module", params=[LLAMA3_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, GPT2_SPLIT_PATTERN],
                ids=["llama3-pattern", "gpt4-pattern", "gpt2-pattern"])
def trained(request, tmp_path_factory):
    """A tokenizer trained on Shakespeare + a little multilingual text and code, and its Hugging Face twin."""
    corpus = shakespeare()[:300_000] + EXTRA_TEXT * 20
    tok = BPETokenizer(pattern=request.param).train(corpus, vocab_size=1024, special_tokens=SPECIALS)
    folder = save_hf_tokenizer(tok, tmp_path_factory.mktemp("hf-tokenizer"))
    return tok, auto_tokenizer(folder)


@pytest.fixture(scope="module")
def llama3(tmp_path_factory):
    tok = Llama3Tokenizer()
    return tok, auto_tokenizer(save_hf_tokenizer(tok, tmp_path_factory.mktemp("hf-llama3")))


def test_bytes_to_unicode_is_gpt2s():
    from transformers.convert_slow_tokenizer import bytes_to_unicode as gpt2s

    assert bytes_to_unicode() == gpt2s()
    alphabet = bytes_to_unicode()
    assert (alphabet[ord(" ")], alphabet[ord("\n")], alphabet[ord("a")]) == ("Ġ", "Ċ", "a")
    assert len(set(bytes_to_unicode().values())) == 256


def test_merges_by_hand():
    ranks = {bytes([i]): i for i in range(256)} | {b"ab": 256, b"bc": 257, b"abc": 258}
    assert hf_merges(ranks) == [(b"a", b"b"), (b"b", b"c"), (b"a", b"bc"), (b"ab", b"c")]


def test_tokenizer_json_layout(trained):
    tok, _ = trained
    data = hf_tokenizer_json(tok)
    vocab = data["model"]["vocab"]
    assert len(vocab) == len(tok.ranks) and vocab["Ġ"] == ord(" ")
    assert [t["content"] for t in data["added_tokens"]] == SPECIALS
    assert [t["id"] for t in data["added_tokens"]] == [tok.special_tokens[s] for s in SPECIALS]
    assert data["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] == tok.pattern


def test_held_out_text_gives_our_ids(trained):
    tok, hf = trained
    text = shakespeare()[300_000:400_000] + EXTRA_TEXT
    ids = tok.encode(text)
    assert hf(text, add_special_tokens=False)["input_ids"] == ids
    assert hf.decode(ids) == text
    assert hf(text)["input_ids"] == [tok.special_tokens["<|begin_of_text|>"], *ids]  # the default adds the bos
    assert (hf.bos_token, hf.eos_token) == ("<|begin_of_text|>", "<|end_of_text|>")


# Assigned code points only: `regex` (ours) and Oniguruma (Hugging Face's) carry different Unicode versions, so a code
# point unassigned in one may be a letter in the other and split differently.
ASSIGNED = st.characters(exclude_categories=("Cn", "Cs"))


def text_with_specials():
    """Assigned Unicode interleaved with whitespace runs, digit runs, contractions and special tokens."""
    parts = st.one_of(
        st.text(ASSIGNED, max_size=30),
        st.sampled_from([" ", "  ", "   ", "\n", "\n\n", "\r\n", "\t", " \n ", "\u3000", "\u00a0 ", "\x1c", "\x85"]),
        st.from_regex(r"[0-9]{1,9}", fullmatch=True),
        st.sampled_from(["'s", "'LL", "'ve ", "n't", "hello", " world", "étè", "Москва", "東京", " the", "KING"]),
        st.sampled_from(SPECIALS),
    )
    return st.lists(parts, max_size=12).map("".join)


@settings(deadline=None, max_examples=200, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(text=text_with_specials())
def test_generated_text_gives_our_ids(trained, text):
    tok, hf = trained
    ids = tok.encode(text, allowed_special="all")
    assert hf(text, add_special_tokens=False)["input_ids"] == ids
    assert hf.decode(ids) == text


def test_llama3_tokenizer_gives_metas_ids(llama3):
    tok, hf = llama3
    text = shakespeare()[:50_000] + EXTRA_TEXT + " việc"  # " việc" is one of the tokens merging cannot reach
    assert hf(text)["input_ids"] == tok.encode(text, bos=True)
    assert hf(" việc", add_special_tokens=False)["input_ids"] == [tok.mergeable_ranks[" việc".encode()]]
    assert len(hf) == tok.n_vocab == 128256
    assert (hf.bos_token_id, hf.eos_token_id) == (tok.bos_id, tok.eos_id)


@settings(deadline=None, max_examples=100, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(text=text_with_specials())
def test_llama3_generated_text_gives_metas_ids(llama3, text):
    tok, hf = llama3
    assert hf(text, add_special_tokens=False)["input_ids"] == tok.encode(text, allowed_special="all")


def test_rank_files_as_input(tmp_path):
    tok = BPETokenizer(pattern=GPT4_SPLIT_PATTERN).train(EXTRA_TEXT * 10, vocab_size=300, special_tokens=SPECIALS)
    tok.save(tmp_path / "tok.model")  # rank file + sidecar (pattern, special tokens)
    folder = save_hf_tokenizer(tmp_path / "tok.model", tmp_path / "from-file")
    assert json.loads((folder / "tokenizer.json").read_text())["added_tokens"][0]["content"] == SPECIALS[0]
    assert auto_tokenizer(folder)(EXTRA_TEXT, add_special_tokens=False)["input_ids"] == tok.encode(EXTRA_TEXT)
    meta = load_tokenizer(default_tokenizer_path())  # Meta's file, recognised by its hash: its 256 special tokens
    assert isinstance(meta, Llama3Tokenizer) and len(meta.special_tokens) == 256
    with pytest.raises(FileNotFoundError, match="tokenizer file not found"):
        save_hf_tokenizer(tmp_path / "missing.model", tmp_path / "x")


def test_save_hf_writes_a_folder_transformers_opens_whole(tmp_path):
    import torch

    from minillama.config import get_preset
    from minillama.model import Llama
    from minillama.weights import save_hf

    tok = BPETokenizer().train(shakespeare()[:100_000], vocab_size=300, special_tokens=SPECIALS[:2])
    torch.manual_seed(0)
    model = Llama(get_preset("nano", vocab_size=tok.n_vocab)).eval()
    save_hf(model, tmp_path / "hf", tokenizer=tok)
    hf_tokenizer = auto_tokenizer(tmp_path / "hf")
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    ids = hf_tokenizer("To be, or not to be", return_tensors="pt")["input_ids"]
    assert ids[0].tolist() == [tok.special_tokens["<|begin_of_text|>"], *tok.encode("To be, or not to be")]
    assert hf_tokenizer.model_max_length == model.config.max_seq_len
    with torch.no_grad():
        assert (hf_model(ids).logits - model(ids)).abs().max() < 1e-4
    with pytest.raises(ValueError, match="ids up to 299.*vocab_size of 256"):
        save_hf(Llama(get_preset("nano")), tmp_path / "small", tokenizer=tok)
