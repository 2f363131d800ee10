"""``minillama plan`` vs hand calculations, PyTorch's own bookkeeping, and the Llama 3 paper's setup."""

from __future__ import annotations

import functools
import json

import pytest
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from minillama.cli import main
from minillama.config import get_preset
from minillama.plan import (
    GPUS,
    activation_bytes,
    block_activation_bytes,
    gpu_for_device_name,
    head_activation_bytes,
    largest_fsdp_unit,
    parse_count,
    plan_grid,
    plan_training,
)

N_8B = 8_030_261_248  # Llama 3.1 8B parameters (checked against Meta's model in test_config)
N_405B = 405_853_388_800
BATCH_16M = 2048 * 8192  # Llama 3's 16M-token batch: 2,048 sequences of 8,192 tokens


def test_8b_model_state_by_hand():
    ddp = plan_training(get_preset("llama3.1-8b"), gpus=8, parallel="ddp")
    assert ddp.memory.weights == N_8B * 2 == 16_060_522_496  # bf16: 16.06 GB
    assert ddp.memory.gradients == N_8B * 2
    assert ddp.memory.optimizer == N_8B * 12 == 96_363_134_976  # fp32 master + m + v
    assert ddp.memory.fsdp_buffers == 0
    fsdp = plan_training(get_preset("llama3.1-8b"), gpus=8, parallel="fsdp")
    assert fsdp.memory.weights == N_8B * 2 // 8 == 2_007_565_312  # sharded 8 ways
    assert fsdp.memory.optimizer == N_8B * 12 // 8
    # the largest FSDP unit of the 8B model is the 128,256 x 4,096 output projection, gathered 3 at a time in bf16
    assert largest_fsdp_unit(get_preset("llama3.1-8b")) == 128_256 * 4096
    assert fsdp.memory.fsdp_buffers == 3 * 2 * 128_256 * 4096
    assert ddp.memory.total == sum((16 * N_8B, ddp.memory.activations))


def test_largest_fsdp_unit_is_a_block_for_405b():
    config = get_preset("llama3.1-405b")
    d, f = 16384, 53248
    block = d * 128 * (2 * 128 + 2 * 8) + 3 * d * f + 2 * d  # wq wo, wk wv; w1 w2 w3; two norms
    assert largest_fsdp_unit(config) == block > config.vocab_size * d


def test_activation_formula_by_hand():
    config = get_preset("llama3.1-8b")
    assert block_activation_bytes(config) == 12 * 4096 + 4 * 8 * 128 + 8 * 14336 + 4 * 32 == 168_064
    assert head_activation_bytes(config) == 4 * 4096 + 8 * 128_256
    tokens = 8192
    full = activation_bytes(config, tokens, activation_checkpointing=False)
    assert full == tokens * (32 * 168_064 + 4 * 4096 + 8 * 128_256)
    checkpointed = activation_bytes(config, tokens, activation_checkpointing=True)
    assert checkpointed == tokens * (32 * 2 * 4096 + 168_064 + 4 * 4096 + 8 * 128_256)


def measured_saved_bytes(config, tokens: int, checkpointing: bool) -> int:
    """Bytes autograd saves for one forward of a bf16 model on ``tokens`` tokens, parameters excluded."""
    from minillama.model import Llama

    torch.manual_seed(0)
    model = Llama(config).to(torch.bfloat16)
    if checkpointing:  # full activation checkpointing, block by block
        for block in model.layers:
            block.forward = functools.partial(checkpoint, block.forward, use_reentrant=False)
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    ids = torch.randint(0, config.vocab_size, (1, tokens))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        F.cross_entropy(model(ids).float().flatten(0, 1), ids.flatten())
    return sum(storages.values())


def test_activation_formula_vs_autograd():
    """The per-block count vs what autograd really saves, measured as the difference between 3 and 2 blocks.

    Checkpointed: exactly the block input (2 d bytes per token). Not checkpointed: the formula plus what the eager
    fp32 RMSNorm adds (x.float() and the fp32 normalized values, 2 x 8 d bytes, and its fp32 1/rms, 2 x 4 bytes),
    which the planner leaves out because fused and compiled norms do not store it.
    """
    tokens = 32
    for name in ("nano", "tiny"):
        config = get_preset(name)
        deeper = get_preset(name, n_layers=config.n_layers + 1)
        for checkpointing in (False, True):
            added = (measured_saved_bytes(deeper, tokens, checkpointing)
                     - measured_saved_bytes(config, tokens, checkpointing))
            if checkpointing:
                assert added == tokens * 2 * config.dim
            else:
                assert added == tokens * (block_activation_bytes(config) + 16 * config.dim + 8)


def test_step_time_and_tokens_per_day_by_hand():
    config = get_preset("llama3.1-8b")
    plan = plan_training(config, gpus=8, gpu="h100", seq_len=8192, batch_tokens=BATCH_16M, mfu=0.4)
    flops_per_token = 6 * (N_8B - 128_256 * 4096 - 65 * 4096) + 12 * 32 * 32 * 128 * 8192
    assert plan.flops_per_token == flops_per_token
    tokens_per_s = 8 * 989e12 * 0.4 / flops_per_token  # about 54,600 tokens/s
    assert plan.tokens_per_s == pytest.approx(tokens_per_s, rel=1e-12)
    assert plan.step_time_s == pytest.approx(BATCH_16M / tokens_per_s, rel=1e-12)
    assert plan.tokens_per_day == pytest.approx(tokens_per_s * 86400, rel=1e-12)
    assert plan.grad_accum_steps == 2048 // 8 and plan.micro_batch == 1
    twice = plan_training(config, gpus=16, seq_len=8192, batch_tokens=BATCH_16M, mfu=0.4)
    assert twice.step_time_s == pytest.approx(plan.step_time_s / 2)


def test_communication_by_hand():
    config = get_preset("llama3.1-8b")
    ddp = plan_training(config, gpus=8, parallel="ddp")
    assert ddp.comm_bytes_per_step == int(2 * 2 * N_8B * 7 / 8)  # one bf16 all-reduce per step
    assert ddp.comm_time_s == pytest.approx(ddp.comm_bytes_per_step / 450e9)  # NVLink inside the node
    fsdp = plan_training(config, gpus=8, parallel="fsdp")
    assert fsdp.comm_bytes_per_step == int(256 * 3 * 2 * N_8B * 7 / 8)  # gather, gather, reduce-scatter per micro-step
    across_nodes = plan_training(config, gpus=16, parallel="ddp")
    assert across_nodes.comm_time_s == pytest.approx(across_nodes.comm_bytes_per_step / 50e9)
    assert plan_training(config, gpus=1, parallel="ddp").comm_bytes_per_step == 0


def test_8b_fits_one_node_only_with_fsdp():
    plans = plan_grid(get_preset("llama3.1-8b"), gpus=8, gpu="h100")
    fits = {(p.parallel, p.activation_checkpointing): p.fits for p in plans}
    assert fits == {("ddp", False): False, ("ddp", True): False, ("fsdp", False): True, ("fsdp", True): True}
    assert all(p.ok for p in plans if p.parallel == "fsdp")


def test_405b_llama3_setup():
    """The Llama 3 paper: 405B on 16,384 H100s, 16M-token batches of 8,192-token sequences, 15.6T tokens.

    The planner is data-parallel only. Fully sharded (FSDP) with activation checkpointing, one sequence per GPU, the
    405B model fits in 80 GB; without checkpointing it does not; on one 8-GPU node nothing fits. But 16M tokens are
    only 2,048 sequences: data parallelism alone cannot use 16,384 GPUs, which is why Meta split each replica over
    128 GPUs with tensor (8) and pipeline (16) parallelism, leaving 128-way data parallelism.
    """
    config = get_preset("llama3.1-405b")
    assert config.num_params() == N_405B
    on_one_node = plan_grid(config, gpus=8, seq_len=8192, batch_tokens=BATCH_16M)
    assert not any(p.fits for p in on_one_node)
    assert min(p.memory.total for p in on_one_node) > 10 * 80e9

    paper = plan_grid(config, gpus=16384, seq_len=8192, batch_tokens=BATCH_16M, train_tokens="15.6T")
    fits = {(p.parallel, p.activation_checkpointing): p.fits for p in paper}
    assert fits == {("ddp", False): False, ("ddp", True): False, ("fsdp", False): False, ("fsdp", True): True}
    fsdp_ac = paper[-1]
    assert fsdp_ac.memory.weights + fsdp_ac.memory.gradients + fsdp_ac.memory.optimizer == pytest.approx(
        16 * N_405B / 16384, abs=3)  # 0.4 GB of model state per GPU
    assert all(any("fewer than the 16,384 GPUs" in problem for problem in p.problems) for p in paper)
    assert not fsdp_ac.ok
    # 6 N D: the paper's 3.8e25 FLOPs; the attention term at 8,192 tokens adds 8% more
    assert 6 * N_405B * 15.6e12 == pytest.approx(3.8e25, rel=0.01)
    assert fsdp_ac.flops_per_token * 15.6e12 / (6 * N_405B * 15.6e12) == pytest.approx(1.08, abs=0.01)
    # at 40% MFU on 16,384 H100s: 15.6T tokens in about 73 days, a 16M-token step in about 6.8 s
    assert fsdp_ac.train_days == pytest.approx(15.6e12 * fsdp_ac.flops_per_token / (16384 * 989e12 * 0.4) / 86400)
    assert 70 < fsdp_ac.train_days < 76 and 6.5 < fsdp_ac.step_time_s < 7.0

    # the most GPUs pure data parallelism can use with this batch: one sequence each
    widest = plan_training(config, gpus=2048, parallel="fsdp", activation_checkpointing=True, seq_len=8192,
                           batch_tokens=BATCH_16M)
    assert widest.fits and widest.ok and widest.grad_accum_steps == 1


def test_gpu_table():
    assert GPUS["h100"].peak_tflops == 989 and GPUS["h100"].memory_gb == 80
    assert GPUS["h100"].ridge_point == pytest.approx(295, abs=1)  # 989 TFLOP/s / 3.35 TB/s
    assert GPUS["h100"].attainable_flops(1.0) == pytest.approx(3.35e12)  # memory-bound: bandwidth x intensity
    assert GPUS["h100"].attainable_flops(296.0) == 989e12  # past the ridge: the peak
    assert (GPUS["h200"].memory_gb, GPUS["a100"].peak_tflops, GPUS["a100-40"].memory_gb) == (141, 312, 40)
    assert (GPUS["l4"].peak_tflops, GPUS["t4"].compute_dtype, GPUS["mi300x"].memory_gb) == (121, "fp16", 192)
    names = {"NVIDIA H100 80GB HBM3": "h100", "NVIDIA H100 PCIe": "h100-pcie", "NVIDIA H200": "h200",
             "NVIDIA A100-SXM4-80GB": "a100", "NVIDIA A100-SXM4-40GB": "a100-40", "NVIDIA L4": "l4",
             "Tesla T4": "t4", "AMD Instinct MI300X": "mi300x", "NVIDIA GeForce RTX 3060": None}
    for device_name, key in names.items():
        assert gpu_for_device_name(device_name) == key, device_name


def test_gpu_table_agrees_with_the_trainers_mfu_table():
    from minillama.train.metrics import peak_flops_for_name

    for device_name in ("NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H200", "NVIDIA A100-SXM4-80GB",
                        "NVIDIA L4", "Tesla T4", "AMD Instinct MI300X"):
        assert peak_flops_for_name(device_name) == GPUS[gpu_for_device_name(device_name)].peak_flops, device_name


def test_parse_count():
    assert parse_count("16M", binary=True) == 2**24 == BATCH_16M
    assert parse_count("4k", binary=True) == 4096
    assert parse_count("15.6T") == 15_600_000_000_000
    assert parse_count("2B") == parse_count("2G") == 2_000_000_000
    assert parse_count(1234) == parse_count("1234") == 1234
    with pytest.raises(ValueError, match="cannot read"):
        parse_count("16 megatokens")


def test_errors_are_messages():
    config = get_preset("llama3.1-8b")
    with pytest.raises(ValueError, match="whole number of 8,192-token sequences"):
        plan_training(config, gpus=8, batch_tokens=1000)
    with pytest.raises(ValueError, match="unknown GPU"):
        plan_training(config, gpus=8, gpu="h1000")
    with pytest.raises(ValueError, match="parallel must be"):
        plan_training(config, gpus=8, parallel="zero")
    with pytest.raises(ValueError, match="gpus must be a positive integer"):
        plan_training(config, gpus=0)
    too_long = plan_training(get_preset("nano"), gpus=1, seq_len=256, batch_tokens=1024)
    assert any("max_seq_len" in problem for problem in too_long.problems)


def test_cli_json(capsys):
    argv = ["plan", "--preset", "llama3.1-70b", "--gpus", "64", "--gpu", "h100", "--seq", "8192",
            "--batch-tokens", "16M", "--json"]
    assert main(argv) == 0
    plans = json.loads(capsys.readouterr().out)
    assert [(p["parallel"], p["activation_checkpointing"]) for p in plans] == [
        ("ddp", False), ("ddp", True), ("fsdp", False), ("fsdp", True)]
    assert plans[0]["n_params"] == 70_553_706_496 and plans[0]["batch_tokens"] == BATCH_16M
    assert [p["fits"] for p in plans] == [False, False, False, True]
    assert plans[3]["memory"]["weights"] == -(-2 * 70_553_706_496 // 64)


def test_cli_table(capsys):
    assert main(["plan", "--preset", "llama3.1-405b", "--gpus", "2048", "--parallel", "fsdp", "--ac", "full",
                 "--train-tokens", "15.6T"]) == 0
    out = capsys.readouterr().out
    assert "FSDP + AC" in out and "DDP" not in out.replace("FSDP", "")
    assert "fits in 80 GB?" in out and "yes" in out
    assert "T tokens take" in out
    assert main(["plan", "--preset", "llama3.1-8b", "--batch-tokens", "1000"]) == 2
    assert "whole number" in capsys.readouterr().out
