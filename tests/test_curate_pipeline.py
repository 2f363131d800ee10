"""The streamed pipeline and ``minillama curate`` on the dirty corpus and on hand-made documents."""

from __future__ import annotations

import json
import random

import pytest

from minillama.cli import main
from minillama.curate.dirty import COPY_KINDS, build_dirty_corpus, edit_words
from minillama.curate.documents import Document, read_documents, write_jsonl
from minillama.curate.minhash import jaccard
from minillama.curate.pipeline import STAGES, CurateConfig, curate
from minillama.curate.text import shingle_strings
from minillama.data import load_text
from minillama.errors import UserError


@pytest.fixture(scope="module")
def passages() -> list[str]:
    text = load_text("tinyshakespeare")
    return [text[i * 20_000 : i * 20_000 + 2000] for i in range(12)]


def test_each_stage_removes_what_it_should(passages):
    rng = random.Random(0)
    footer = "We use cookies to improve your experience. Accept all cookies."
    documents = [Document(f"p{i}", f"{p}\n{footer}") for i, p in enumerate(passages)]
    documents += [
        Document("exact", passages[0].upper().replace(" ", "  ") + "\n" + footer),
        Document("near", edit_words(passages[1], 0.02, rng, passages[2].split()) + "\n" + footer),
        Document("spam", "\n".join(["Buy cheap watches now! Best cheap watches!!! #watches #cheap"] * 30)),
        Document("code", "def f():\n    return 1\n" * 5, domain="code"),
    ]
    stream, counts = curate(documents)
    kept = list(stream)
    assert [d.id for d in kept] == [f"p{i}" for i in range(12)] + ["code"]
    assert all(footer not in d.text for d in kept)  # in 14 documents > 6
    assert counts["exact_dedup"].dropped == {"exact_duplicate": 1}
    assert counts["near_dedup"].dropped == {"near_duplicate": 1}
    assert counts["line_dedup"].lines_removed == 12  # the footer of the 12 passages (the copies are gone by then)
    assert sum(counts["filters"].dropped.values()) == 1
    for before, after in zip(STAGES[:-1], STAGES[1:], strict=True):
        assert counts[before].documents_out == counts[after].documents_in


def test_dirty_corpus_is_reproducible_and_labelled():
    a, b = build_dirty_corpus(seed=0), build_dirty_corpus(seed=0)
    assert a == b and a != build_dirty_corpus(seed=1)
    kinds = {d.kind for d in a}
    assert kinds == {"original", "exact_copy", "near_copy", "boilerplate", "spam", "lorem", "gibberish", "word_salad"}
    assert {d.domain for d in a} == {"prose", "code"}


def test_pipeline_on_the_dirty_corpus_removes_copies_and_noise():
    documents = build_dirty_corpus()
    stream, counts = curate(documents)
    kept = list(stream)
    # one document of each original and its copies remains (whichever came first), unless the copy was edited so
    # much that its Jaccard similarity sits on the low side of the S-curve's step near 0.53
    by_id = {d.id: d for d in documents}
    groups = {}
    for d in kept:
        groups.setdefault(d.id.removesuffix("-copy").removesuffix("-near"), []).append(by_id[d.id].text)
    both_kept = [g for g in groups.values() if len(g) > 1]
    assert len(both_kept) < 15
    for original, copy in both_kept:
        assert jaccard(shingle_strings(original), shingle_strings(copy)) < 0.65
    assert not [d for d in kept if d.kind in ("gibberish", "lorem", "boilerplate")]
    assert sum(d.kind in COPY_KINDS for d in kept) + sum(counts[s].dropped_kinds["original"] for s in
                                                        ("exact_dedup", "near_dedup")) >= 40
    assert counts["line_dedup"].lines_removed > 500


def test_cli_curates_a_jsonl_file_and_writes_the_report(tmp_path, capsys):
    corpus = tmp_path / "dirty.jsonl"
    assert main(["curate", "--make-dirty-corpus", str(corpus)]) == 0
    assert main(["curate", "--train-classifier", str(tmp_path / "q.npz"), str(corpus)]) == 0
    metrics = json.loads(capsys.readouterr().out.split("saved")[0].split("\n", 1)[1])
    assert metrics["precision"] > 0.9 and metrics["recall"] > 0.9
    out = tmp_path / "out"
    assert main(["curate", str(corpus), str(out), "--classifier", str(tmp_path / "q.npz"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    kept = (out / "kept.jsonl").read_text().splitlines()
    assert report["stages"]["classifier"]["documents_out"] == len(kept)
    assert report["stages"]["exact_dedup"]["documents_in"] == sum(1 for _ in read_documents(corpus))
    assert report["stages"]["classifier"]["dropped_kinds"].get("word_salad", 0) > 80
    assert "near_dedup" in printed and not list(out.glob("*.partial"))


def test_cli_reads_a_folder_of_files(tmp_path, passages, capsys):
    for i, p in enumerate(passages[:3]):
        (tmp_path / f"{i}.txt").write_text(p)
    (tmp_path / "copy.txt").write_text(passages[0])
    (tmp_path / "mod.py").write_text("import os\n\nprint(os.getcwd())\n")
    assert main(["curate", str(tmp_path), str(tmp_path / "out"), "--no-progress"]) == 0
    kept = [json.loads(line) for line in (tmp_path / "out" / "kept.jsonl").read_text().splitlines()]
    assert [d["id"] for d in kept] == ["0.txt", "1.txt", "2.txt", "mod.py"] and kept[-1]["domain"] == "code"


def test_bad_input_is_a_one_line_error(tmp_path, capsys):
    assert main(["curate", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists(), "a refused input must not leave an output folder behind"
    (tmp_path / "bad.jsonl").write_text('{"txt": 1}\n')
    assert main(["curate", str(tmp_path / "bad.jsonl"), str(tmp_path / "out"), "--no-progress"]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("*")), "a failed run leaves no partial file"
    (tmp_path / "math.jsonl").write_text('{"text": "1 + 1 = 2", "domain": "math"}\n')
    assert main(["curate", str(tmp_path / "math.jsonl"), str(tmp_path / "out"), "--no-progress"]) == 2
    assert "'domain' must be" in capsys.readouterr().err
    assert main(["curate", str(tmp_path / "bad.jsonl"), "out", "--bands", "30", "--rows", "5"]) == 2
    with pytest.raises(UserError):
        CurateConfig(num_perm=16, bands=4, rows=5)


def test_help_documents_the_pipeline(capsys):
    with pytest.raises(SystemExit):
        main(["curate", "--help"])
    text = capsys.readouterr().out
    for stage in ("exact dedup", "near dedup", "line dedup", "filters", "classifier", "1 - (1 - J**rows)**bands"):
        assert stage in text


def test_write_jsonl_round_trips(tmp_path):
    documents = [Document("a", "x y", "s", "prose", "original"), Document("b", "def f(): pass", "", "code", "")]
    write_jsonl(documents, tmp_path / "d.jsonl")
    assert list(read_documents(tmp_path / "d.jsonl")) == documents


def test_named_document_corpora_stream_without_a_local_path(monkeypatch, tmp_path):
    """``tinystories`` and ``fineweb-edu`` are read through minillama.data, every split. Their download cannot run
    offline, so the corpus's own ``documents`` is replaced by two strings per split: what is checked is the wiring."""
    from minillama.data import DOCUMENT_CORPORA

    corpus = DOCUMENT_CORPORA["tinystories"]
    monkeypatch.setattr(type(corpus), "documents", lambda self, split: iter([f"a {split} story", "another"]))
    monkeypatch.chdir(tmp_path)
    documents = list(read_documents("tinystories"))
    assert [d.text for d in documents] == [f"a {s} story" if i == 0 else "another" for s in corpus.splits
                                           for i in range(2)]
    assert documents[0].id == f"tinystories-{corpus.splits[0]}-0" and documents[0].source == "tinystories"
    with pytest.raises(UserError, match="named corpora: tinystories"):
        read_documents("tinystoriez")
