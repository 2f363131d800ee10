"""Token shards: what is written equals encoding each document, for any chunking and number of processes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from minillama.tokenizer import (
    BPETokenizer,
    Llama3Tokenizer,
    load_shard,
    read_shard_info,
    write_document_shard,
    write_shard,
)

DOCS = [
    "First document.\nIt has two lines, 12345 digits and <|endoftext|> typed by a user.",
    "Second: ünïcödé, 東京, 🦙 — and trailing spaces   ",
    "Third\r\nwith CRLF\r\n\r\nline ends",
    "x" * 200,  # no safe place to cut inside (but shorter than the forced cut at 32 * chunk_chars)
]
SEP = "\n<doc>\n"


@pytest.fixture(scope="module")
def tok() -> BPETokenizer:
    return BPETokenizer().train(" ".join(DOCS) * 20, vocab_size=320, special_tokens=["<|endoftext|>"])


def expected_ids(tok, docs):
    eot = tok.special_tokens["<|endoftext|>"]
    return [i for doc in docs if doc for i in [*tok.encode_ordinary(doc), eot]]


@pytest.mark.parametrize("chunk_chars", [7, 64, 1 << 20])
def test_file_shard_equals_encoding_each_document(tok, tmp_path, chunk_chars):
    source = tmp_path / "corpus.txt"
    source.write_bytes((SEP.join(DOCS) + SEP).encode("utf-8"))  # a trailing separator makes no empty document
    info = write_shard(
        source, tmp_path / "c.bin", tok, document_separator=SEP, chunk_chars=chunk_chars, processes=1, progress=False
    )
    tokens = load_shard(tmp_path / "c.bin")
    assert tokens.dtype == np.uint16 and isinstance(tokens, np.memmap)
    assert tokens.tolist() == expected_ids(tok, DOCS)
    assert (info.num_tokens, info.num_documents) == (len(tokens), len(DOCS))
    assert read_shard_info(tmp_path / "c.bin") == info


def test_processes_do_not_change_the_shard(tok, tmp_path):
    source = tmp_path / "corpus.txt"
    source.write_text(SEP.join(DOCS * 30), encoding="utf-8")
    for processes in (1, 2):
        write_shard(
            source,
            tmp_path / f"p{processes}.bin",
            tok,
            document_separator=SEP,
            chunk_chars=50,
            processes=processes,
            progress=False,
        )
    assert (tmp_path / "p1.bin").read_bytes() == (tmp_path / "p2.bin").read_bytes()
    assert load_shard(tmp_path / "p2.bin").tolist() == expected_ids(tok, DOCS * 30)


def test_each_file_is_a_document_without_separator(tok, tmp_path):
    paths = []
    for i, doc in enumerate(DOCS):
        paths.append(tmp_path / f"{i}.txt")
        paths[-1].write_text(doc, encoding="utf-8", newline="")
    info = write_shard(paths, tmp_path / "files.bin", tok, chunk_chars=16, processes=1, progress=False)
    assert load_shard(tmp_path / "files.bin").tolist() == expected_ids(tok, DOCS)
    assert info.sources == [str(p) for p in paths] and info.document_separator is None


def test_document_shard_and_llama3_uint32(tmp_path):
    llama = Llama3Tokenizer()
    info = write_document_shard(
        iter(["", *DOCS]), tmp_path / "l.bin", llama, source="test", chunk_chars=32, processes=1, progress=False
    )
    tokens = load_shard(tmp_path / "l.bin", expected_fingerprint=llama.fingerprint())
    assert tokens.dtype == np.uint32 and info.eot_id == llama.eos_id == 128001
    assert tokens.tolist() == [i for doc in DOCS for i in [*llama.encode(doc), 128001]]


def test_sidecar_records_the_tokenizer(tok, tmp_path):
    write_document_shard(DOCS, tmp_path / "s.bin", tok, processes=1, progress=False)
    meta = json.loads((tmp_path / "s.json").read_text())
    assert meta["tokenizer_fingerprint"] == tok.fingerprint()
    assert meta["dtype"] == "uint16" and meta["eot_id"] == tok.special_tokens["<|endoftext|>"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.bin", "s.json"]  # no temporary file left behind
    other = BPETokenizer().train("other text " * 10, 260, special_tokens=["<|endoftext|>"])
    with pytest.raises(ValueError, match="not by the expected tokenizer"):
        load_shard(tmp_path / "s.bin", expected_fingerprint=other.fingerprint())


def test_errors(tok, tmp_path):
    with pytest.raises(FileNotFoundError, match="corpus file not found"):
        write_shard(tmp_path / "missing.txt", tmp_path / "m.bin", tok, progress=False)
    with pytest.raises(ValueError, match="pass eot_id"):
        write_document_shard(DOCS, tmp_path / "e.bin", BPETokenizer(), progress=False)
    with pytest.raises(FileNotFoundError, match="shard metadata not found"):
        load_shard(tmp_path / "m.bin")
    write_document_shard(DOCS, tmp_path / "t.bin", tok, processes=1, progress=False)
    with open(tmp_path / "t.bin", "r+b") as f:
        f.truncate(10)
    with pytest.raises(ValueError, match="truncated"):
        load_shard(tmp_path / "t.bin")
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(ValueError, match="not a token-shard sidecar"):
        load_shard(tmp_path / "t.bin")


def test_forced_cut_keeps_the_text(tok, tmp_path):
    (tmp_path / "run.txt").write_text("y" * 1000)  # no safe place: cut by force every 32 * chunk_chars characters
    write_shard(tmp_path / "run.txt", tmp_path / "run.bin", tok, chunk_chars=8, processes=1, progress=False)
    assert tok.decode(load_shard(tmp_path / "run.bin")[:-1].tolist()) == "y" * 1000


def test_empty_corpus(tok, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    info = write_shard(tmp_path / "empty.txt", tmp_path / "empty.bin", tok, processes=1, progress=False)
    assert info.num_tokens == 0 and load_shard(tmp_path / "empty.bin").size == 0
