"""Checkpoints: a kill in the middle of a save never costs the previous checkpoint; retention keeps last K + best."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from _train_helpers import nano_config, one_thread, small_corpus  # noqa: F401 (one_thread is a fixture)

from minillama.config import get_preset
from minillama.model import Llama
from minillama.train.trainer import Trainer
from minillama.train.training_checkpoint import PAUSE_BEFORE_RENAME_ENV, Checkpointer, resolve_checkpoint
from minillama.weights import load_checkpoint

TESTS = os.path.dirname(os.path.abspath(__file__))


def test_kill_during_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, one_thread):  # noqa: F811
    monkeypatch.setenv("MINILLAMA_CACHE", str(tmp_path / "cache"))
    corpus = small_corpus(tmp_path)
    run = tmp_path / "run"
    first = Trainer(nano_config(run, corpus, max_steps=10), log=lambda text: None)
    first.fit(stop_at=5)
    good = run / "checkpoints" / "step_5"
    assert good.is_dir()
    good_weights = {k: v.clone() for k, v in first.model.state_dict().items()}

    # A second process resumes, trains to step 10 and saves; it sleeps between writing the temporary folder and
    # renaming it, and we SIGKILL it there: the worst moment, with every byte of the new checkpoint on disk.
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {TESTS!r})
        torch.set_num_threads(1)
        from _train_helpers import nano_config
        from minillama.train.trainer import Trainer
        Trainer(nano_config({str(run)!r}, {str(corpus)!r}, max_steps=10, resume={str(run)!r})).fit()
    """)
    env = {**os.environ, PAUSE_BEFORE_RENAME_ENV: "60"}
    deadline = time.monotonic() + 90
    with subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True) as process:
        try:
            while not list((run / "checkpoints").glob(".tmp-step_10-*/meta.json")):
                assert process.poll() is None, f"the training process ended early: {process.stderr.read()}"
                assert time.monotonic() < deadline, "the save never started"
                time.sleep(0.1)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        finally:
            process.kill()
    assert process.returncode == -signal.SIGKILL

    checkpointer = Checkpointer(run / "checkpoints")
    assert checkpointer.latest() == good  # the half-saved step 10 is invisible
    assert resolve_checkpoint(run) == good
    assert list((run / "checkpoints").glob(".tmp-*"))  # the debris is still there...
    resumed = Trainer(nano_config(run, corpus, max_steps=10, resume=str(run)), log=lambda text: None)
    assert resumed.step == 5
    for name, tensor in resumed.model.state_dict().items():
        assert torch.equal(tensor, good_weights[name]), name
    assert torch.equal(load_checkpoint(good).tok_embeddings.weight, good_weights["tok_embeddings.weight"])
    resumed.fit()
    assert checkpointer.latest() == run / "checkpoints" / "step_10"
    assert not list((run / "checkpoints").glob(".tmp-*"))  # ...until the next save clears it


def _model():
    torch.manual_seed(0)
    return Llama(get_preset("nano"))


def test_keeps_the_last_k_and_the_best(tmp_path):
    model = _model()
    optimizer = torch.optim.AdamW(model.parameters())
    checkpointer = Checkpointer(tmp_path, keep_last=2)
    for step, val_loss in zip([1, 2, 3, 4, 5], [5.0, 3.0, 4.0, 6.0, 7.0], strict=True):
        checkpointer.save(step, model, optimizer, {"step": step}, val_loss=val_loss)
    assert [p.name for p in checkpointer.checkpoints()] == ["step_2", "step_4", "step_5"]
    assert json.loads((tmp_path / "step_2" / "meta.json").read_text())["val_loss"] == 3.0
    checkpointer.save(6, model, optimizer, {"step": 6}, val_loss=1.0)  # a new best replaces the old one
    assert [p.name for p in checkpointer.checkpoints()] == ["step_5", "step_6"]


def test_a_checkpoint_round_trips_and_is_a_model_folder(tmp_path):
    model = _model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.zeros(1, 4, dtype=torch.long)).sum().backward()
    optimizer.step()
    path = Checkpointer(tmp_path).save(7, model, optimizer, {"step": 7, "loader": {"epoch": 1, "batch": 2}})
    other = Llama(get_preset("nano"))
    other_optimizer = torch.optim.AdamW(other.parameters(), lr=1e-3)
    state = Checkpointer(tmp_path).load(path, other, other_optimizer)
    assert state == {"step": 7, "loader": {"epoch": 1, "batch": 2}}
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert torch.equal(other_optimizer.state_dict()["state"][0]["exp_avg"],
                       optimizer.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(load_checkpoint(path).norm.weight, model.norm.weight)  # `minillama generate` can read it


def test_a_model_that_is_not_a_minillama_llama_is_named_in_one_line(tmp_path):
    wrapped = torch.nn.Sequential(_model())  # a wrapper, as DDP or a user's own module would be
    optimizer = torch.optim.AdamW(wrapped.parameters())
    for call in (lambda: Checkpointer(tmp_path).save(1, wrapped, optimizer, {"step": 1}),
                 lambda: Checkpointer(tmp_path).load(tmp_path, wrapped)):
        with pytest.raises(TypeError, match=r"^checkpoints hold a minillama.model.Llama, got Sequential: pass the "
                                            r"bare model[^\n]*$"):
            call()
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_resolve_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_checkpoint(tmp_path / "nowhere")
