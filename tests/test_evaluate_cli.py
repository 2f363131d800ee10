"""``minillama eval`` end to end on a freshly trained nano checkpoint: output files, and clear errors."""

from __future__ import annotations

import json

import pytest
from _train_helpers import nano_config, one_thread, small_corpus  # noqa: F401 (one_thread is a fixture)

from minillama.cli import main
from minillama.evaluate.generated import arithmetic
from minillama.evaluate.tasks import write_jsonl
from minillama.train.trainer import Trainer


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval_cli")
    Trainer(nano_config(tmp / "run", small_corpus(tmp), max_steps=10)).fit()
    return tmp / "run"


def test_eval_writes_items_and_summary(run_dir, tmp_path, capsys, one_thread):  # noqa: F811
    items = write_jsonl(arithmetic(n_items=12).items, tmp_path / "sums.jsonl")
    out = tmp_path / "out"
    assert main(["eval", str(run_dir), "--task", str(items), "--shots", "2", "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sums, 2-shot, 12 items (chance 0.250)" in printed and "95% interval" in printed
    records = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    assert len(records) == 12 and summary["n_items"] == 12 and summary["shots"] == 2
    assert summary["acc"]["value"] == pytest.approx(sum(r["acc"] for r in records) / 12)
    assert summary["acc"]["low"] <= summary["acc"]["value"] <= summary["acc"]["high"]


def test_clear_errors(run_dir, tmp_path, capsys):
    assert main(["eval", str(run_dir), "--task", "no-such-task"]) == 2
    assert "unknown task 'no-such-task'" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["eval", str(run_dir), "--tokenizer", "llama3", "--limit", "1"]) == 2
    assert "not the tokenizer this model was trained with" in capsys.readouterr().err
