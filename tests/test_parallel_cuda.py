"""The GPU path (NCCL, bf16 mixed precision, compile): skipped without CUDA GPUs, with the reason.

On a GPU machine: ``pytest tests/test_parallel_cuda.py`` (one GPU runs the first test, two run them all).
"""

from __future__ import annotations

import json

import pytest
import torch
from _parallel_helpers import cuda_mixed_precision, cuda_two_ranks, run_config, spawn
from _tensor_parallel_helpers import cuda_tensor_parallel
from _train_helpers import small_corpus

from minillama.train.metrics import read_metrics
from minillama.train.trainer import Trainer

GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0


def losses(run_dir) -> torch.Tensor:
    """The training losses a run folder's metrics.jsonl recorded, step by step."""
    return torch.tensor([r["loss"] for r in read_metrics(run_dir) if r["kind"] == "train"])


@pytest.mark.skipif(GPUS < 1, reason="needs a CUDA GPU (NCCL backend, bf16 mixed precision)")
def test_fsdp_computes_in_bf16_and_reduces_in_fp32(tmp_path):
    spawn(cuda_mixed_precision, str(tmp_path), world_size=1)
    result = json.loads((tmp_path / "cuda_rank_0.json").read_text())
    assert result["backend"] == "nccl" and result["device"].startswith("cuda")
    assert result["logits"] == "torch.bfloat16"  # the matmuls ran on bf16 copies of the weights
    assert result["weight"] == "torch.float32" and result["grad"] == "torch.float32"  # fp32 shards and gradients


@pytest.mark.skipif(GPUS < 2, reason="needs 2 CUDA GPUs (NCCL between them)")
def test_two_gpus_match_one(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILLAMA_CACHE", str(tmp_path / "cache"))
    corpus = small_corpus(tmp_path, chars=20_000)
    Trainer(run_config(tmp_path / "single", corpus, device="cuda", dtype="float32"), log=lambda text: None).fit()
    spawn(cuda_two_ranks, str(tmp_path), str(corpus))

    reference = losses(tmp_path / "single")
    for name in ("ddp", "fsdp"):  # GPU kernels sum in other orders than the CPU's: a looser tolerance
        torch.testing.assert_close(losses(tmp_path / name), reference, rtol=1e-4, atol=0)
    bf16 = losses(tmp_path / "fsdp_bf16")
    assert torch.isfinite(bf16).all() and bf16[-1] < bf16[0]
    torch.testing.assert_close(bf16, reference, rtol=3e-2, atol=0)


@pytest.mark.skipif(GPUS < 2, reason="needs 2 CUDA GPUs (tensor parallelism over NCCL)")
def test_tensor_parallel_on_two_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILLAMA_CACHE", str(tmp_path / "cache"))
    corpus = small_corpus(tmp_path, chars=20_000)
    Trainer(run_config(tmp_path / "single", corpus, device="cuda", dtype="float32"), log=lambda text: None).fit()
    spawn(cuda_tensor_parallel, str(tmp_path), str(corpus))

    reference = losses(tmp_path / "single")
    torch.testing.assert_close(losses(tmp_path / "tp2"), reference, rtol=1e-4, atol=0)
    bf16 = losses(tmp_path / "tp2_bf16")
    assert torch.isfinite(bf16).all() and bf16[-1] < bf16[0]
    torch.testing.assert_close(bf16, reference, rtol=3e-2, atol=0)
    meta = json.loads((tmp_path / "results" / "cuda_tp2_rank_0.json").read_text())["meta_init"]
    assert meta["finite"] and meta["norm_ones"] and meta["slices_differ"]  # each GPU drew its own numbers
