"""``parallelize`` and its config, in one process: what can be checked without a process group.

FSDP and DDP themselves (losses equal to one process, sharding on the meta device, communication counts) are
checked on 2 processes in tests/test_parallel_training.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import minillama.model
from minillama.config import get_preset
from minillama.model import Llama
from minillama.parallel.parallelize import ParallelConfig, parallelize
from minillama.plan import plan_training
from minillama.train.config import TrainConfig


def test_model_file_never_imports_torch_distributed():
    tree = ast.parse(Path(minillama.model.__file__).read_text())
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    imported += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert imported and not [name for name in imported if name.startswith("torch.distributed")]


def test_config_validation_and_defaults():
    with pytest.raises(ValueError, match="data_parallel must be one of none, ddp, fsdp"):
        ParallelConfig(data_parallel="zero3")
    config = ParallelConfig()
    assert config.data_parallel == "fsdp" and config.reduce_dtype == torch.float32 and config.param_dtype is None


def test_from_train_config_picks_the_mixed_precision_policy():
    fsdp = TrainConfig(parallel="fsdp", activation_checkpointing=True, compile=True)
    on_gpu = ParallelConfig.from_train_config(fsdp, torch.bfloat16)  # bf16 compute, fp32 gradient reduction
    assert (on_gpu.param_dtype, on_gpu.reduce_dtype) == (torch.bfloat16, torch.float32)
    assert on_gpu.activation_checkpointing and on_gpu.compile
    on_cpu = ParallelConfig.from_train_config(fsdp, None)  # float32 throughout
    assert on_cpu.param_dtype is None
    ddp = ParallelConfig.from_train_config(TrainConfig(parallel="ddp"), torch.bfloat16)  # autocast does it
    assert ddp.data_parallel == "ddp" and ddp.param_dtype is None
    with pytest.raises(ValueError, match="FSDP with float16"):
        ParallelConfig.from_train_config(fsdp, torch.float16)


def test_train_config_parallel_field():
    assert TrainConfig().parallel == "none"
    with pytest.raises(ValueError, match="parallel must be one of none, ddp, fsdp"):
        TrainConfig(parallel="tp")


def test_none_applies_checkpointing_only_and_keeps_the_function():
    torch.manual_seed(0)
    model = Llama(get_preset("nano"))
    tokens = torch.randint(0, 256, (2, 16))
    expected = model(tokens)
    out = parallelize(model, ParallelConfig(data_parallel="none", activation_checkpointing=True))
    assert out is model
    torch.testing.assert_close(out(tokens), expected, rtol=0, atol=0)
    assert all(block.forward.__wrapped__ == type(block).forward.__get__(block) for block in model.layers)


def test_fsdp_without_a_process_group_says_what_to_do():
    if torch.distributed.is_initialized():
        pytest.skip("a process group is already initialized in this process")
    with pytest.raises(RuntimeError, match="need a process group"):
        parallelize(Llama(get_preset("nano")), ParallelConfig(data_parallel="fsdp"))


@pytest.mark.parametrize(("name", "gpus"),
                         [("llama3.1-8b-8xh100", 8), ("llama3.1-70b-fsdp", 64), ("llama3.1-405b", 16384)])
def test_gpu_configs_are_what_their_comments_say(name, gpus):
    """Each GPU config fits by ``minillama plan`` on the GPUs it is written for, with the memory and the FSDP
    communication time its comment quotes. The one problem a config may have is FSDP's traffic outlasting a step at
    40% MFU, and then its comment says so ("communication-bound")."""
    path = Path(__file__).resolve().parents[1] / "configs" / f"{name}.toml"
    config = TrainConfig.from_toml(path)
    assert config.parallel == "fsdp" and config.activation_checkpointing and config.dtype == "bfloat16"
    tp = config.tensor_parallel
    plan = plan_training(get_preset(config.model), gpus=gpus, parallel="fsdp", activation_checkpointing=True,
                         seq_len=config.seq_len, micro_batch=config.batch_size, tensor_parallel=tp,
                         batch_tokens=gpus // tp * config.batch_size * config.grad_accum_steps * config.seq_len)
    assert plan.fits and plan.grad_accum_steps == config.grad_accum_steps
    assert all(problem.startswith("communication (") for problem in plan.problems), plan.problems
    text = path.read_text()
    assert f"{plan.memory.total / 1e9:.1f} GB" in text and f"{plan.comm_time_s:.1f} s" in text
    assert ("communication-bound" in text) == (not plan.ok)
