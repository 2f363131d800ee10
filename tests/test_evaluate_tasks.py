"""Tasks: public formats on small fixtures (prompts as lm-evaluation-harness builds them), SHA-256 pins, JSONL,
k-shot prompts, and the generated tasks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from minillama.data.download import ChecksumError, sha256_of
from minillama.errors import UserError
from minillama.evaluate import public
from minillama.evaluate.generated import arithmetic, shakespeare_next_line
from minillama.evaluate.tasks import Item, Task, fewshot_context, fewshot_examples, get_task, read_jsonl, write_jsonl

FIXTURES = Path(__file__).parent / "fixtures" / "evaluate"


def test_hellaswag_matches_the_harness_preprocessing():
    hellaswag_utils = pytest.importorskip("lm_eval.tasks.hellaswag.utils")
    records = list(public.records(FIXTURES / "hellaswag_val.jsonl"))
    for record in records:
        item = public.hellaswag_item(record)
        ctx = record["ctx_a"] + " " + record["ctx_b"].capitalize()
        assert item.context == hellaswag_utils.preprocess(record["activity_label"] + ": " + ctx)
        assert list(item.choices) == [hellaswag_utils.preprocess(e) for e in record["endings"]]
        assert item.gold == record["label"]
    assert public.hellaswag_item(records[1]).context == (
        "Baking cookies: How to bake cookies. Preheat the oven. set it to 350 degrees")


def test_arc_jsonl_and_parquet_give_the_same_items():
    pytest.importorskip("pyarrow")
    from_jsonl = [public.arc_item(r) for r in public.records(FIXTURES / "ARC-Easy-Dev.jsonl")]
    from_parquet = [public.arc_item(r) for r in public.records(FIXTURES / "ARC-Easy-Test.parquet")]
    assert from_jsonl == from_parquet
    assert from_jsonl[0] == Item("Fixture_1", "Question: Which gas do plants take in from the air?\nAnswer:",
                                 ("oxygen", "carbon dioxide", "helium", "neon"), 1)
    assert from_jsonl[1].gold == 1  # answerKey "2" among labels "1", "2", "3"


def test_piqa_parquet():
    pytest.importorskip("pyarrow")
    items = [public.piqa_item(r) for r in public.records(FIXTURES / "piqa_validation.parquet")]
    assert items[1].context == "Question: Open a jar with a tight lid\nAnswer:"
    assert items[1].choices[items[1].gold] == "run the lid under hot water, then twist."


def test_mirror_file_is_checked_against_its_pin(tmp_path, monkeypatch):
    shutil.copy(FIXTURES / "hellaswag_val.jsonl", tmp_path / "hellaswag_val.jsonl")
    monkeypatch.setenv("MINILLAMA_DATA_MIRROR", str(tmp_path))
    pin = sha256_of(tmp_path / "hellaswag_val.jsonl")
    good = public.Source("hellaswag_val.jsonl", "https://example.invalid/x", pin, public.hellaswag_item)
    assert public.source_path(good) == tmp_path / "hellaswag_val.jsonl"
    monkeypatch.setitem(public.SOURCES, "hellaswag", good)
    assert len(public.load_public("hellaswag").items) == 2
    bad = public.Source("hellaswag_val.jsonl", "https://example.invalid/x", "0" * 64, public.hellaswag_item)
    with pytest.raises(ChecksumError, match="expected 0000"):
        public.source_path(bad)


def test_unpinned_download_is_pinned_at_first_use(tmp_path, monkeypatch):
    monkeypatch.delenv("MINILLAMA_DATA_MIRROR", raising=False)
    monkeypatch.setenv("MINILLAMA_CACHE", str(tmp_path))
    cached = tmp_path / "eval" / "piqa_validation.parquet"
    cached.parent.mkdir()
    shutil.copy(FIXTURES / "piqa_validation.parquet", cached)  # as if downloaded
    public.source_path(public.SOURCES["piqa"])
    assert (tmp_path / "eval" / "piqa_validation.parquet.sha256").read_text().strip() == sha256_of(cached)
    cached.write_bytes(cached.read_bytes() + b"changed")
    with pytest.raises(ChecksumError, match="changed since it was pinned"):
        public.source_path(public.SOURCES["piqa"])


def test_offline_without_the_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("MINILLAMA_DATA_MIRROR", raising=False)
    monkeypatch.setenv("MINILLAMA_CACHE", str(tmp_path))
    monkeypatch.setenv("MINILLAMA_OFFLINE", "1")
    with pytest.raises(UserError, match="MINILLAMA_DATA_MIRROR"):
        public.source_path(public.SOURCES["arc-easy"])


def test_jsonl_round_trip_and_bad_lines(tmp_path):
    items = arithmetic(n_items=5).items
    assert read_jsonl(write_jsonl(items, tmp_path / "a.jsonl")) == items
    (tmp_path / "bad.jsonl").write_text(json.dumps({"id": "x", "context": "c", "choices": ["a"], "gold": 0}) + "\n")
    with pytest.raises(UserError, match="line 1"):
        read_jsonl(tmp_path / "bad.jsonl")
    assert get_task(str(tmp_path / "a.jsonl")).items == items
    with pytest.raises(UserError, match="unknown task 'nope'.*arithmetic"):
        get_task("nope")


def test_fewshot_prompt_by_hand_and_by_seed():
    items = [Item(f"q{i}", f"Q: {i}+{i}?\nA:", (str(2 * i), str(2 * i + 1)), 0) for i in range(10)]
    task = Task("toy", items)
    one = fewshot_examples(task, items[0], 1, seed=3)[0]
    assert fewshot_context(task, items[0], 1, seed=3) == f"{one.context} {one.choices[0]}\n\n" + items[0].context
    for seed in range(20):
        drawn = fewshot_examples(task, items[4], 5, seed)
        assert items[4] not in drawn and len(set(drawn)) == 5
        assert drawn == fewshot_examples(task, items[4], 5, seed)  # the same seed, the same draw
    assert len({tuple(e.id for e in fewshot_examples(task, items[4], 3, s)) for s in range(20)}) > 5
    with pytest.raises(UserError, match="--shots 10"):
        fewshot_examples(task, items[0], 10, seed=0)
    assert fewshot_context(task, items[2], 0) == items[2].context


def test_generated_tasks_are_deterministic_and_well_formed():
    task = shakespeare_next_line(n_items=30)
    assert task.items == shakespeare_next_line(n_items=30).items
    assert task.items != shakespeare_next_line(n_items=30, seed=1).items
    golds = [item.gold for item in task.items]
    assert len(set(golds)) == 4  # the true line is not always in the same place
    for item in task.items:
        assert len(set(item.choices)) == 4 and item.context.endswith("\n")
    assert {i.id for i in task.items}.isdisjoint({i.id for i in task.fewshot_items})
    sums = arithmetic(n_items=20)
    for item in sums.items:
        a, b = (int(x) for x in item.context.split("What is ")[1].split("?")[0].split(" plus "))
        assert int(item.choices[item.gold]) == a + b
        assert sum(int(c) == a + b for c in item.choices) == 1
