"""``bench/gpu_train_bench.py``: the GPU benchmark's code path, run on the CPU with ``--smoke`` (nano, 3 steps)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench" / "gpu_train_bench.py"


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=300)


def test_smoke_runs_the_training_path_on_cpu():
    result = run_bench("--smoke", "--json", "--rmsnorm", "triton")
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = json.loads(result.stdout)
    assert record["model"] == "nano" and record["device"] == "cpu"
    assert record["n_params"] == 131_392 and record["batch"] * record["seq_len"] == 2 * 64
    assert record["compile_backend"] == "aot_eager"
    assert record["rmsnorm"] == "minillama.kernels: PyTorch fallback (no Triton here)" or torch.cuda.is_available()
    assert record["mfu"] is None and record["tokens_per_s"] > 0
    losses = record["losses"]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
    assert abs(losses[0] - math.log(256)) < 0.2  # random init: about ln(vocab)
    assert losses[-1] < losses[0]  # three AdamW steps on one batch lower its loss
    # the planner's estimate for the same run: 16 bytes per parameter + activations
    assert record["planned_memory_gb"] * 1e9 > 16 * record["n_params"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the benchmark would run")
def test_without_cuda_it_stops_with_a_message():
    result = run_bench("--models", "nano")
    assert result.returncode != 0
    assert "needs a CUDA GPU" in result.stderr and "--smoke" in result.stderr
