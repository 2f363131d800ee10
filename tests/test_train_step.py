"""train_step: gradient accumulation equals one big batch, clipping, and the non-finite guard."""

from __future__ import annotations

import math

import pytest
import torch
from _train_helpers import nano_config, one_thread, small_corpus  # noqa: F401 (one_thread is a fixture)

from minillama.config import get_preset
from minillama.model import Llama
from minillama.train.guard import NonFiniteGuard, TrainingDiverged
from minillama.train.metrics import read_metrics
from minillama.train.step import cross_entropy_loss, train_step
from minillama.train.trainer import Trainer


def _setup(seed=0):
    torch.manual_seed(seed)
    model = Llama(get_preset("nano"))
    tokens = torch.randint(0, 256, (4, 17), generator=torch.Generator().manual_seed(seed))
    return model, tokens[:, :-1], tokens[:, 1:]


def _grads(model):
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_accumulation_equals_one_big_batch():
    """Two micro-batches of 2 with the 1/2 loss scale give the gradient of one batch of 4 (up to rounding)."""
    model, inputs, targets = _setup()
    sgd = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: look at the gradients, keep the weights
    big = cross_entropy_loss(model(inputs), targets)
    big.backward()
    expected = _grads(model)
    model.zero_grad()
    captured = {}
    original_step = sgd.step

    def capture(*args, **kwargs):
        captured.update(_grads(model))
        return original_step(*args, **kwargs)

    sgd.step = capture
    result = train_step(model, sgd, [(inputs[:2], targets[:2]), (inputs[2:], targets[2:])], lr=0.0, grad_clip=0.0)
    assert result.applied
    assert result.loss == pytest.approx(big.item(), rel=1e-6)
    for name, grad in expected.items():
        torch.testing.assert_close(captured[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in expected.values()])).item()
    assert result.grad_norm == pytest.approx(norm, rel=1e-5)


def test_clipping_scales_the_gradient_to_the_threshold():
    model, inputs, targets = _setup(1)
    sgd = torch.optim.SGD(model.parameters(), lr=1.0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    result = train_step(model, sgd, [(inputs, targets)], lr=1.0, grad_clip=0.1)
    assert result.grad_norm > 0.1  # the reported norm is the one before clipping
    # With SGD and lr 1 the update is minus the clipped gradient, whose global norm is the threshold.
    update = torch.cat([(before[name] - p.detach()).flatten() for name, p in model.named_parameters()])
    assert update.norm().item() == pytest.approx(0.1, rel=1e-4)


def test_a_non_finite_step_changes_nothing():
    model, inputs, targets = _setup(2)
    adamw = torch.optim.AdamW(model.parameters(), lr=1e-2)
    with torch.no_grad():
        model.layers[0].attention.wq.weight[0, 0] = math.nan
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    result = train_step(model, adamw, [(inputs, targets)], lr=1e-2, grad_clip=1.0)
    assert not result.applied and math.isnan(result.loss)
    assert adamw.state_dict()["state"] == {}  # no moment was updated
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), before[name]) or name.endswith("wq.weight"), name
        assert p.grad is None


def test_guard_counts_in_a_row_and_resets():
    guard = NonFiniteGuard(max_bad_steps=3)
    assert [guard.check(s, v, 1.0) for s, v in enumerate([1.0, math.nan, math.inf, 2.0])] == [True, False, False, True]
    assert guard.consecutive == 0 and guard.total_skipped == 2
    guard.last_good_checkpoint = "runs/x/checkpoints/step_40"
    guard.check(10, math.nan, 1.0)
    guard.check(11, 1.0, math.nan)
    with pytest.raises(TrainingDiverged, match=r"3 consecutive steps.*runs/x/checkpoints/step_40.*--resume"):
        guard.check(12, math.nan, math.nan)


def test_trainer_skips_bad_steps_then_aborts_naming_the_last_good_checkpoint(tmp_path, monkeypatch, one_thread):  # noqa: F811
    monkeypatch.setenv("MINILLAMA_CACHE", str(tmp_path / "cache"))
    corpus = small_corpus(tmp_path)
    run = tmp_path / "run"
    settings = dict(max_steps=30, max_bad_steps=4, checkpoint_interval=3)
    trainer = Trainer(nano_config(run, corpus, **settings), log=lambda text: None)
    trainer.fit(stop_at=4)  # step_3, confirmed good by step 4, and step_4, not confirmed by anything yet
    trainer = Trainer(nano_config(run, corpus, **settings, resume=str(run)), log=lambda text: None)
    with torch.no_grad():  # a corrupted weight: every later loss is NaN
        trainer.model.norm.weight[0] = math.nan
    with pytest.raises(TrainingDiverged, match=f"last good checkpoint is {run / 'checkpoints' / 'step_3'};"):
        trainer.fit()
    records = read_metrics(run)
    assert [r["step"] for r in records if r["kind"] == "skip"] == [5, 6, 7, 8]


def test_float16_overflows_lower_the_loss_scale_without_tripping_the_guard(tmp_path, monkeypatch, one_thread):  # noqa: F811
    """An fp16 overflow is the GradScaler's business (skip, halve the scale), not a divergence."""
    monkeypatch.setenv("MINILLAMA_CACHE", str(tmp_path / "cache"))
    corpus = small_corpus(tmp_path)
    trainer = Trainer(nano_config(tmp_path / "run", corpus, max_steps=16, dtype="float16", max_bad_steps=2),
                      log=lambda text: None)
    trainer.grad_scaler = torch.amp.GradScaler("cpu", init_scale=2.0**28)  # far too large: the first steps overflow
    trainer.fit()
    records = read_metrics(tmp_path / "run")
    overflows = [r["step"] for r in records if r["kind"] == "overflow"]
    assert overflows[:3] == [1, 2, 3]  # more in a row than max_bad_steps
    assert trainer.grad_scaler.get_scale() < 2.0**28
    assert trainer.guard.total_skipped == 0 and math.isfinite(trainer.last_eval["val_loss"])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's own imports (torch.jit.script_method)
def test_activation_checkpointing_changes_memory_not_results():
    from minillama.train.wrapping import apply_activation_checkpointing, compile_blocks

    model, inputs, targets = _setup(3)
    names = list(model.state_dict())
    cross_entropy_loss(model(inputs), targets).backward()
    expected = _grads(model)
    model.zero_grad()
    apply_activation_checkpointing(model)
    cross_entropy_loss(model(inputs), targets).backward()
    for name, grad in _grads(model).items():
        torch.testing.assert_close(grad, expected[name], rtol=1e-5, atol=1e-7, msg=name)
    assert list(compile_blocks(model).state_dict()) == names  # wrapping in place keeps checkpoint names
