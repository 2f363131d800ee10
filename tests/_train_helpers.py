"""Shared by the tests/test_train_*.py files: a small offline corpus and a seconds-long ``nano`` run config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from minillama.data.corpora import pydocs_text
from minillama.train.config import TrainConfig


@pytest.fixture
def one_thread():
    """Tiny models run several times faster on one thread than on two busy ones (the test machines are shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_corpus(directory: Path, chars: int = 120_000) -> Path:
    """English text that every Python installation carries (pydoc topics), as a local corpus file."""
    path = directory / "corpus.txt"
    if not path.exists():
        path.write_text(pydocs_text()[:chars])
    return path


def nano_config(run_dir: Path, corpus: Path, **overrides) -> TrainConfig:
    """The ``nano`` preset (byte-level, 2 layers of width 64) for a few steps of 4 x 32 tokens."""
    values = dict(model="nano", corpus=str(corpus), seq_len=32, batch_size=4, max_steps=20, warmup_steps=3,
                  lr=3e-3, eval_interval=10, eval_batches=4, log_interval=1, checkpoint_interval=100,
                  num_samples=0, sample_tokens=16, progress=False, device="cpu", run_dir=str(run_dir))
    values.update(overrides)
    return TrainConfig(**values)
