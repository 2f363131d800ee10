"""Sharded checkpoints in one process (DCP without a process group): round trip, atomicity, consolidation, and the
errors for the wrong format. Resharding between 1 and 2 ranks is in tests/test_parallel_training.py."""

from __future__ import annotations

import json

import pytest
import torch

from minillama.config import get_preset
from minillama.model import Llama
from minillama.parallel import sharded_checkpoint as sharded
from minillama.parallel.sharded_checkpoint import ShardedCheckpointer, consolidate, is_sharded_checkpoint
from minillama.parallel.training import check_resume_format
from minillama.train.config import TrainConfig
from minillama.train.training_checkpoint import Checkpointer, rng_state
from minillama.weights import load_checkpoint


def _trained(seed: int) -> tuple[Llama, torch.optim.AdamW]:
    """A nano model and its AdamW after one step (so the optimizer has moments to save)."""
    torch.manual_seed(seed)
    model = Llama(get_preset("nano"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    tokens = torch.randint(0, 256, (2, 9))
    model(tokens[:, :-1]).logsumexp(-1).mean().backward()
    optimizer.step()
    return model, optimizer


def _state(step: int) -> dict:
    return {"step": step, "loader": {"epoch": 0, "batch": step}, "rng": rng_state(), "config": ""}


def test_round_trip_restores_weights_optimizer_and_state(tmp_path):
    model, optimizer = _trained(0)
    tokenizer = tmp_path / "tok.model"
    tokenizer.write_text("rank file")
    path = ShardedCheckpointer(tmp_path / "ckpts").save(3, model, optimizer, _state(3), tokenizer_file=tokenizer,
                                                        val_loss=2.5)
    assert path.name == "step_3" and is_sharded_checkpoint(path)
    assert (path / "tokenizer.model").read_text() == "rank file"
    assert json.loads((path / "meta.json").read_text())["world_size"] == 1

    other, other_optimizer = _trained(1)
    state = ShardedCheckpointer(tmp_path / "ckpts").load(path, other, other_optimizer)
    assert state["step"] == 3 and state["loader"] == {"epoch": 0, "batch": 3} and "rng_per_rank" not in state
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(optimizer.state_dict()["state"][0][key], other_optimizer.state_dict()["state"][0][key])


def test_a_crash_before_the_rename_leaves_no_checkpoint(tmp_path, monkeypatch):
    model, optimizer = _trained(0)
    checkpointer = ShardedCheckpointer(tmp_path, keep_last=1)
    checkpointer.save(1, model, optimizer, _state(1))

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ShardedCheckpointer, "_write_rank0_files", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpointer.save(2, model, optimizer, _state(2))
    assert [p.name for p in checkpointer.checkpoints()] == ["step_1"]  # the temporary folder is not listed
    assert checkpointer.latest().name == "step_1"
    monkeypatch.undo()
    checkpointer.save(3, model, optimizer, _state(3))  # cleans the leftover, prunes to keep_last=1
    assert [p.name for p in tmp_path.iterdir()] == ["step_3"]


def test_consolidate_gives_a_checkpoint_generate_can_load(tmp_path):
    model, optimizer = _trained(0)
    path = ShardedCheckpointer(tmp_path / "ckpts").save(1, model, optimizer, _state(1))
    out = consolidate(path, tmp_path / "model")
    loaded = load_checkpoint(out)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="is not a sharded checkpoint"):
        consolidate(out, tmp_path / "again")


def test_the_wrong_format_is_refused_with_the_command_that_works(tmp_path):
    model, optimizer = _trained(0)
    dcp_path = ShardedCheckpointer(tmp_path / "a" / "checkpoints").save(1, model, optimizer, _state(1))
    plain_path = Checkpointer(tmp_path / "b" / "checkpoints").save(1, model, optimizer, _state(1))
    with pytest.raises(ValueError, match="resume it with --parallel fsdp"):
        check_resume_format(TrainConfig(parallel="ddp", resume=str(dcp_path)), sharded=False)
    with pytest.raises(ValueError, match="resume it with --parallel ddp or without --parallel"):
        check_resume_format(TrainConfig(parallel="fsdp", resume=str(plain_path)), sharded=True)
    check_resume_format(TrainConfig(parallel="none", resume=str(dcp_path)), sharded=True)
    with pytest.raises(ValueError, match="not a sharded checkpoint"):
        ShardedCheckpointer(tmp_path).load(plain_path, model)
    assert sharded.METADATA_FILE == ".metadata"
