"""Corpora as documents, and the tokenizer + token shards cache, checked against the text they came from."""

from __future__ import annotations

import importlib.util
from dataclasses import replace

import numpy as np
import pytest

from minillama.data.corpora import DOCUMENT_CORPORA, _parquet_documents, pydocs_text
from minillama.data.documents import text_source
from minillama.data.tokenized import EOT, prepare_corpus
from minillama.tokenizer.bpe import BPETokenizer

STORIES = ["Once upon a time, there was a cat.\nThe cat was happy.", "Tom had a red ball. He liked to play.",
           "The sun was hot. Lily and Ben went to the park to play in the shade of a big tree."]


@pytest.fixture
def stories_mirror(tmp_path, monkeypatch):
    """A miniature TinyStories in the offline mirror: stories separated by <|endoftext|> lines."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    train = "\n<|endoftext|>\n".join(STORIES * 40) + "\n"
    (mirror / "TinyStoriesV2-GPT4-train.txt").write_text(train)
    (mirror / "TinyStoriesV2-GPT4-valid.txt").write_text("\n<|endoftext|>\n".join(STORIES[::-1] * 4) + "\n")
    _use_miniature(monkeypatch, mirror, tmp_path)
    return mirror


def _use_miniature(monkeypatch, mirror, tmp_path):
    """Point the mirror and cache at tmp_path; the real TinyStories files are pinned by size and SHA-256, so the
    miniature stands in for them unpinned."""
    monkeypatch.setenv("MINILLAMA_DATA_MIRROR", str(mirror))
    monkeypatch.setenv("MINILLAMA_CACHE", str(tmp_path / "cache"))
    corpus = DOCUMENT_CORPORA["tinystories"]
    unpinned = {split: tuple(replace(f, sha256=None, size=None) for f in files)
                for split, files in corpus.files.items()}
    monkeypatch.setitem(DOCUMENT_CORPORA, "tinystories", replace(corpus, files=unpinned))


def test_tinystories_has_two_splits_of_documents(stories_mirror):
    source = text_source("tinystories")
    assert source.splits == ("train", "val") and source.has_validation_split
    assert list(source.documents("train")) == STORIES * 40
    assert list(source.documents("val")) == STORIES[::-1] * 4
    assert DOCUMENT_CORPORA["tinystories"].files["val"][0].filename == "TinyStoriesV2-GPT4-valid.txt"


def test_prepare_corpus_tokenizes_each_document_then_eot(stories_mirror):
    data = prepare_corpus("tinystories", vocab_size=300)
    eot = data.tokenizer.special_tokens[EOT]
    assert data.tokenizer.n_vocab == 300 and eot == 299
    assert data.train.dtype == np.uint16 and isinstance(data.train, np.memmap)
    # The validation shard is the validation file, story by story, each followed by the end-of-text token.
    expected = []
    for story in STORIES[::-1] * 4:
        expected += data.tokenizer.encode_ordinary(story) + [eot]  # the slow pure-Python path as a reference
    assert data.val.tolist() == expected
    # Bits per byte count the bytes of the text: the token byte lengths of the train shard sum to its UTF-8 size.
    lengths = data.token_bytes()
    assert lengths[eot] == 0
    assert int(lengths[np.asarray(data.train)].sum()) == sum(len(s.encode()) for s in STORIES * 40)


def test_everything_is_cached_and_keyed(stories_mirror, monkeypatch, tmp_path):
    first = prepare_corpus("tinystories", vocab_size=300)

    def no_training(*args, **kwargs):
        raise AssertionError("the cached tokenizer should have been used")

    monkeypatch.setattr(BPETokenizer, "train", no_training)
    again = prepare_corpus("tinystories", vocab_size=300)
    assert again.tokenizer_path == first.tokenizer_path and again.train.filename == first.train.filename
    monkeypatch.undo()
    _use_miniature(monkeypatch, stories_mirror, tmp_path)
    other = prepare_corpus("tinystories", vocab_size=280)  # another tokenizer: other shards
    assert other.train.filename != first.train.filename
    # An explicit tokenizer file is used as given.
    explicit = prepare_corpus("tinystories", tokenizer=first.tokenizer_path)
    assert explicit.train.filename == first.train.filename


def test_local_file_is_one_split_with_a_tail_for_validation(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILLAMA_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "notes.txt"
    path.write_text(pydocs_text()[:20_000])
    data = prepare_corpus(path, vocab_size=300, val_fraction=0.25)
    total = len(data.train) + len(data.val)
    assert len(data.val) == round(0.25 * total)
    key = text_source(path).key
    path.write_text("an edited file is another corpus. " * 300)
    assert text_source(path).key != key


def test_parquet_needs_pyarrow_or_reads_the_text_column(tmp_path):
    if importlib.util.find_spec("pyarrow") is None:
        with pytest.raises(ImportError, match="pip install pyarrow"):
            next(_parquet_documents(tmp_path / "shard.parquet"))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"text": STORIES, "id": [1, 2, 3]}), tmp_path / "shard.parquet", row_group_size=2)
        assert list(_parquet_documents(tmp_path / "shard.parquet")) == STORIES


def test_document_corpora_are_not_one_string():
    from minillama.data import load_text

    with pytest.raises(ValueError, match="text_source"):
        load_text("tinystories")
