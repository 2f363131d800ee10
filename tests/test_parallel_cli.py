"""The command line: ``torchrun --nproc_per_node 2 -m minillama.parallel train --parallel fsdp`` on CPU, then the
same run resumed by one process (a process group of one), from the sharded checkpoint the two ranks wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from _train_helpers import small_corpus

from minillama.parallel.sharded_checkpoint import is_sharded_checkpoint
from minillama.train.metrics import read_metrics

FLAGS = ["--parallel", "fsdp", "--device", "cpu", "--model", "nano", "--seq-len", "32", "--warmup-steps", "1",
         "--eval-interval", "3", "--eval-batches", "2", "--checkpoint-interval", "3", "--num-samples", "1",
         "--sample-tokens", "8", "--log-interval", "1", "--threads", "1", "--no-progress"]


def _run(command: list[str], env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
    return result


def test_torchrun_two_ranks_then_resume_in_one_process(tmp_path):
    env = {**os.environ, "MINILLAMA_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    corpus, run_dir = small_corpus(tmp_path, chars=19_700), tmp_path / "run"  # uneven evaluation shares
    two = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "minillama.parallel", "train", *FLAGS, "--corpus", str(corpus), "--batch-size", "2",
                "--max-steps", "3", "--run-dir", str(run_dir)], env)
    assert two.stdout.count("== nano on") == 1  # only rank 0 reports
    assert "2 x 1 x 2 x 32" in two.stderr  # world size x accumulation x batch x sequence, logged once
    checkpoint = run_dir / "checkpoints" / "step_3"
    assert is_sharded_checkpoint(checkpoint) and len(list(checkpoint.glob("*.distcp"))) == 2

    one = _run([sys.executable, "-m", "minillama.parallel", "train", *FLAGS, "--resume", str(run_dir),
                "--batch-size", "4", "--max-steps", "5"], env)
    assert f"resumed from {checkpoint} at step 3" in one.stderr
    assert "changed since" not in one.stderr  # 2 ranks x 2 windows = 1 x 4: the same global batch
    steps = [r["step"] for r in read_metrics(run_dir) if r["kind"] == "train"]
    assert steps == [1, 2, 3, 4, 5]
    final = run_dir / "checkpoints" / "step_5"
    assert json.loads((final / "meta.json").read_text())["world_size"] == 1
    assert (run_dir / "plots").is_dir()
