"""Exact resume: 20 steps in one go and 10 + resume + 10 give bitwise the same losses and weights on CPU."""

from __future__ import annotations

import pytest
import torch
from _train_helpers import nano_config, one_thread, small_corpus  # noqa: F401 (one_thread is a fixture)

from minillama.train.metrics import read_metrics
from minillama.train.trainer import Trainer


def _records(run_dir, kind, key):
    return [r[key] for r in read_metrics(run_dir) if r["kind"] == kind]


def test_resume_gives_bitwise_identical_losses(tmp_path, monkeypatch, one_thread):  # noqa: F811
    monkeypatch.setenv("MINILLAMA_CACHE", str(tmp_path / "cache"))
    corpus = small_corpus(tmp_path, chars=4500)  # 31 batches per epoch: the run crosses an epoch boundary
    # Accumulation, clipping and evaluation with samples all happen inside the 20 steps.
    settings = dict(max_steps=20, grad_accum_steps=2, grad_clip=0.5, eval_interval=7, num_samples=1)

    straight = Trainer(nano_config(tmp_path / "straight", corpus, **settings), log=lambda text: None)
    assert straight.loader.batches_per_epoch < 20 * 2
    straight.fit()

    first = Trainer(nano_config(tmp_path / "resumed", corpus, **settings), log=lambda text: None)
    first.fit(stop_at=10)
    assert first.step == 10 and (tmp_path / "resumed" / "checkpoints" / "step_10").is_dir()
    second = Trainer(nano_config(tmp_path / "resumed", corpus, **settings, resume=str(tmp_path / "resumed")),
                     log=lambda text: None)
    assert second.step == 10
    second.fit()

    expected = _records(tmp_path / "straight", "train", "loss")
    assert len(expected) == 20
    assert _records(tmp_path / "resumed", "train", "loss") == expected  # exact float equality, step by step
    assert _records(tmp_path / "resumed", "eval", "val_loss") == _records(tmp_path / "straight", "eval", "val_loss")
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, second.model.state_dict()[name]), name
    for name, value in straight.optimizer.state_dict()["state"][0].items():
        assert torch.equal(value, second.optimizer.state_dict()["state"][0][name]), name


def test_resume_errors_are_clear(tmp_path, monkeypatch, one_thread):  # noqa: F811
    monkeypatch.setenv("MINILLAMA_CACHE", str(tmp_path / "cache"))
    corpus = small_corpus(tmp_path)
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(FileNotFoundError, match="neither a checkpoint"):
        Trainer(nano_config(tmp_path / "x", corpus, resume=str(tmp_path / "empty_run")))
    Trainer(nano_config(tmp_path / "run", corpus), log=lambda text: None).fit(stop_at=1)
    other = tmp_path / "other.txt"
    other.write_text(corpus.read_text()[::-1])
    with pytest.raises(ValueError, match="trained with corpus="):
        Trainer(nano_config(tmp_path / "run", other, resume=str(tmp_path / "run")))
    messages = []
    Trainer(nano_config(tmp_path / "run", corpus, seed=5, resume=str(tmp_path / "run")), log=messages.append)
    assert any("seed changed" in m for m in messages)
